"""Shared fixtures: no network but loopback, the fake model server, a copy of the small test suite."""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from pathlib import Path

import pytest

from fake_server import FakeModelServer, echo_responder

DATA = Path(__file__).parent / "data"
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address) -> None:
    if isinstance(address, (str, bytes)):     # AF_UNIX
        return
    host = address[0]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise ConnectionRefusedError(f"tests may only connect to loopback, not {host!r}")


def _guarded_connect(self, address):
    _loopback_only(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _loopback_only(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path_factory):
    """Refuse every non-loopback connection, so no test reaches the internet by accident; give each test its
    own response cache, so no test reads or writes the user's."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BILAN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def fake_server():
    """A fake OpenAI/Anthropic server on 127.0.0.1; set `.responder` to decide its replies."""
    with FakeModelServer(echo_responder) as server:
        yield server


@pytest.fixture
def suite_dir(tmp_path, monkeypatch) -> Path:
    """A private copy of tests/data/suite, as the working directory."""
    target = tmp_path / "suite"
    shutil.copytree(DATA / "suite", target, ignore=shutil.ignore_patterns("runs"))
    monkeypatch.chdir(target)
    return target


def run_and_export(root: Path) -> None:
    """In a copy of the small suite: `bilan run --out run`, then export its review sheet to exported.csv."""
    from harness.cli import main
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", "--out", "run", "--no-cache"]) == 0
        assert main(["review", "export", "run", "--out", "exported.csv"]) == 0
    finally:
        os.chdir(cwd)
