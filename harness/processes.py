"""Worker processes (issue 14): a run's units split over forked processes that each stream their messages (result
rows, counts) to the parent through a pipe; the parent alone writes them. One Python process is one core, and a run
against fast servers is CPU-bound in the SDKs' HTTP stacks; each worker has its own event loop and connections.

Forked, not spawned: a worker starts with the loaded, validated suite in memory and nothing to re-import. Where fork
is not available (macOS and Windows default to spawn, and fork there is unsafe), a run stays in one process."""
from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar, cast

from .providers.base import Budget, BudgetExceeded

FORK = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
MAX_WORKERS = 8          # each worker holds the suite and its own connections: a few dozen MB apiece
PR_SET_PDEATHSIG = 1     # prctl(2)
T = TypeVar("T")
DRAIN_SECONDS = 10.0     # after an interrupt, how long workers have to send what they finished


def available_cpus() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        return os.cpu_count() or 1


class WorkerCrashed(RuntimeError):
    """A worker process failed with an unexpected error (its traceback is the message)."""


class SharedBudget(Budget):
    """The run's `Budget` in shared memory, so that `--max-cost` holds across worker processes: every reservation
    and settlement takes one lock, for microseconds."""

    def __init__(self, max_cost: float | None = None, spent: float = 0.0):
        context = multiprocessing.get_context("fork")
        self.max_cost = max_cost
        self._lock = context.Lock()
        self._spent = context.RawValue("d", spent)
        self._reserved = context.RawValue("d", 0.0)

    @property
    def spent(self) -> float:
        return self._spent.value

    @spent.setter
    def spent(self, value: float) -> None:
        self._spent.value = value

    @property
    def reserved(self) -> float:
        return self._reserved.value

    @reserved.setter
    def reserved(self, value: float) -> None:
        self._reserved.value = value

    def reserve(self, estimate: float) -> None:
        """As Budget.reserve, across processes."""
        with self._lock:
            if self.max_cost is not None and self._spent.value + self._reserved.value + estimate > self.max_cost:
                raise BudgetExceeded(f"the next call (reserved ${estimate:.4f}) could pass "
                                     f"--max-cost ${self.max_cost:g}")
            self._reserved.value += estimate

    def settle(self, estimate: float, actual: float) -> None:
        """As Budget.settle, across processes."""
        with self._lock:
            self._reserved.value -= estimate
            self._spent.value += actual


Send = Callable[[Any], None]
Child = Callable[[int, Send, Callable[[], bool]], None]


def run_interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a worker process. One Ctrl-C reaches a worker twice (the terminal sends it to the whole
    process group and the parent passes it on), so the first interrupt cancels the run, which then ends in
    KeyboardInterrupt as under `asyncio.run`, and every later one is ignored until the worker ends: the run's
    own way out (its last messages, the closing of its connections and of its event loop) is never cut."""
    interrupted = False

    async def guarded() -> T:
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert task is not None

        def interrupt(signum: int, frame: Any) -> None:
            nonlocal interrupted
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            interrupted = True
            loop.call_soon_threadsafe(task.cancel)
        previous = signal.signal(signal.SIGINT, interrupt)
        try:
            return await coro
        finally:
            if not interrupted:
                signal.signal(signal.SIGINT, previous)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


def _end_with_the_parent() -> None:
    """Ask Linux to end this worker when its parent dies (a kill -9 leaves no worker calling models)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _child_main(child: Child, index: int, conn: Connection, stop: Any, parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)      # not the command's handler: terminate() ends a worker
    _end_with_the_parent()
    if os.getppid() != parent:          # the parent died before the request took effect
        return
    try:
        child(index, conn.send, stop.is_set)
    except KeyboardInterrupt:      # the parent was interrupted too: it keeps what was sent and says so
        pass
    except BrokenPipeError:        # the parent is gone: nobody is left to tell
        pass
    except BaseException:
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def run_workers(count: int, child: Child, on_message: Callable[[Any], bool]) -> None:
    """Run `child(index, send, stopped)` in `count` forked processes and hand every message they send to
    `on_message` in the parent, as it arrives; when `on_message` returns True, the workers are told to stop
    (`stopped()` turns true: each finishes what it has in hand). Returns when every worker has ended and its
    messages are handled. On an interrupt, workers are interrupted too and their last messages handled before the
    interrupt goes on; an unexpected error in a worker is raised here as WorkerCrashed, after the others end."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    processes, readers = [], []
    for index in range(count):
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_child_main, args=(child, index, writer, stop, os.getpid()),
                                  daemon=True, name=f"bilan-worker-{index + 1}")
        process.start()
        writer.close()               # the parent's copy: the pipe ends when the worker's copy closes
        processes.append(process)
        readers.append(reader)
    crashes: list[str] = []

    def handle(open_readers: list[Connection], timeout: float | None = None) -> None:
        while open_readers:
            ready = wait(open_readers, timeout)
            if not ready:
                return
            for reader in cast(list[Connection], ready):
                try:
                    message: Any = reader.recv()
                except EOFError:
                    open_readers.remove(reader)
                    continue
                if message[0] == "crash":
                    crashes.append(message[1])
                    stop.set()
                elif on_message(message):
                    stop.set()

    try:
        handle(readers)
    except BaseException:
        stop.set()
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        try:
            handle(readers, DRAIN_SECONDS)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
        raise
    finally:
        for process in processes:
            process.join()
        for reader in readers:
            reader.close()
    if crashes:
        raise WorkerCrashed(crashes[0])
