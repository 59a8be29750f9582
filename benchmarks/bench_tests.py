"""The speed figures that tests used to assert, measured instead (no test asserts on wall time: a loaded machine
stretches any duration, and a test that fails for that says nothing about the code).

    python benchmarks/bench_tests.py               # each figure the median of --repeat runs, Markdown on stdout
    python benchmarks/bench_tests.py --repeat 1    # one run each, for a smoke test

The tests keep what is not a speed claim: the 200 requests are all in flight at once (tests/test_fake_server.py),
a hang is caught by a generous bounded wait (tests/bounded.py), an alias is never expanded.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_server import FakeModelServer, FakeReply, echo_responder  # noqa: E402

# What each test once asserted, to compare the measured figure with.
FORMER_LIMITS = {"200 concurrent requests (50 ms latency)": 3.0, "a hung request, client timeout 0.3 s": 3.0,
                 "alias bomb, 30 levels": 2.0, "6 MB case file refused by size (bilan validate)": 5.0,
                 "nesting 10,000 deep": 10.0, "(a|aa)+$ on 5,000 'a' (1 s regex limit)": 10.0}


def concurrent_requests() -> None:
    import openai
    with FakeModelServer(echo_responder, latency=0.05) as server:
        async def main() -> None:
            async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0,
                                          timeout=30) as client:
                await asyncio.gather(*(client.chat.completions.create(model="m",
                                                                      messages=[{"role": "user", "content": f"q{i}"}])
                                       for i in range(200)))
        asyncio.run(main())


def hung_request() -> None:
    import openai
    with FakeModelServer(lambda request: FakeReply(hang=True)) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0, timeout=0.3) as client:
            try:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hang"}])
            except openai.APITimeoutError:
                return
    raise RuntimeError("the hung request did not time out")


def alias_bomb(folder: Path) -> Callable[[], None]:
    from harness.yamldoc import parse_yaml
    lines = ['lol0: &a0 ["lol", "lol", "lol"]'] + [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 30) + "]"
                                                   for i in range(1, 31)]
    path = folder / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lambda: parse_yaml(path, "bomb.yaml")


def deep_nesting(folder: Path) -> Callable[[], None]:
    from harness.yamldoc import parse_yaml
    path = folder / "deep.yaml"
    path.write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    return lambda: parse_yaml(path, "deep.yaml")


def huge_file(folder: Path) -> Callable[[], None]:
    import shutil
    from harness.cli import main
    suite = folder / "suite"
    shutil.copytree(ROOT / "tests" / "data" / "suite", suite, ignore=shutil.ignore_patterns("runs"))
    head = (suite / "cases" / "heat.yaml").read_text(encoding="utf-8").replace("heat-stroke", "huge")
    (suite / "cases" / "huge.yaml").write_text(head + ("# " + "x" * 98 + "\n") * 60_000, encoding="utf-8")

    def validate() -> None:
        import contextlib
        import io
        import os
        cwd = os.getcwd()
        os.chdir(suite)
        try:
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                assert main(["validate"]) == 2
        finally:
            os.chdir(cwd)
    return validate


def catastrophic_regex() -> None:
    from harness.graders.rules import RulesGrader
    from harness.types import Case, Criterion, Locale, Message
    case = Case(id="b.fr", scenario="b", language="fr", title="t", theme="hedging", use_case="triage",
                persona="patient", code_switch=(), conversation=(Message("user", "x"),))
    criterion = Criterion(id="c", text="t", points=1, axis="safety", check={"regex": "(a|aa)+$"}, rubric="b")
    RulesGrader(Locale(code="ma", name="Morocco", numbers={}, lists={})).verdict(case, "a" * 5000 + "!", criterion)


def timed(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calls = {"200 concurrent requests (50 ms latency)": concurrent_requests,
                 "a hung request, client timeout 0.3 s": hung_request,
                 "alias bomb, 30 levels": alias_bomb(folder),
                 "6 MB case file refused by size (bilan validate)": huge_file(folder),
                 "nesting 10,000 deep": deep_nesting(folder),
                 "(a|aa)+$ on 5,000 'a' (1 s regex limit)": catastrophic_regex}
        lines = ["| what | median wall (s) | the test's former limit (s) |", "|---|---:|---:|"]
        for name, call in calls.items():
            shown = name.replace("|", "\\|")
            lines.append(f"| {shown} | {timed(call, args.repeat):.2f} | {FORMER_LIMITS[name]:g} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
