"""Wall time of each stage of one bilan command, in the same process, without a profiler's slowdown.

    python benchmarks/stage_times.py run --config bilan.yaml --out runs/x     # any bilan command line

Runs `bilan <args>` in this process with the stages wrapped in timers and prints one line to stderr: imports
(the CLI and the modules a run uses), loading and validating the suite (load_project), the engine (run.run, of
which the manifest), and the summary and reports (report.rebuild: reading results, summarize, write_reports).
Start-up before the first import (the interpreter, about 0.05 s) is not counted. Stages that a command does not
reach are left out.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

STARTED = time.perf_counter()

import harness.cli as cli  # noqa: E402
import harness.cli.common as common  # noqa: E402
import harness.load  # noqa: E402
import harness.report  # noqa: E402
import harness.run  # noqa: E402

IMPORTED = time.perf_counter()
SPENT: dict[str, float] = {}


def timed(module: Any, name: str, label: str) -> None:
    """Replace module.name by the same function, its wall time added to SPENT[label]."""
    function: Callable = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[label] = SPENT.get(label, 0.0) + time.perf_counter() - start
    setattr(module, name, wrapper)


STAGES = [(harness.load, "load_project", "load and validate"), (harness.run, "run", "engine"),
          (harness.run, "manifest", "  of which manifest"), (harness.report, "rebuild", "summary + reports"),
          (harness.report, "read_results", "  reading results"), (harness.report, "summarize", "  summarize"),
          (harness.report, "write_reports", "  write_reports")]


def main() -> int:
    for module, name, label in STAGES:
        timed(module, name, label)
    # the CLI holds load_project through common.load's module: rebind it there too
    common.load_project = harness.load.load_project
    try:
        code = cli.main(sys.argv[1:])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    total = time.perf_counter() - STARTED
    parts = [f"imports {IMPORTED - STARTED:.2f}"] + [f"{label.strip()} {SPENT[label]:.2f}" for _, _, label in STAGES
                                                     if label in SPENT]
    print(f"stages (s): {'; '.join(parts)}; total {total:.2f}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
