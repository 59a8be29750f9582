"""The autouse guard refuses connections beyond loopback."""
import socket

import pytest


def test_non_loopback_connection_is_refused():
    with pytest.raises(ConnectionRefusedError, match="loopback"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


def test_loopback_connection_is_allowed(fake_server):
    with socket.create_connection(("127.0.0.1", fake_server.port), timeout=2):
        pass
