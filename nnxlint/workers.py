"""Per-file work in forked worker processes that cannot take the run down with them.

LibCST's native parser can abort the process (an allocation failure on a huge
file) or crash on pathological nesting, and a few inputs make it take minutes.
Each worker is handed one file at a time, so the parent always knows which file
a worker is on: a worker that dies costs that file alone (NNX000 "crashed the
parser"), one that overruns the per-file time limit is killed (NNX000), and a
fresh worker takes over.  Normal runs pay one pipe round trip per file.

Workers die with the run: on Linux the kernel sends them SIGTERM when the main
process is gone (``kill -9`` by a CI timeout included), and a worker checks
that its parent is alive right before it writes a user's file.  A SIGTERM that
arrives during a write is held until the write is complete (the file is then
either the old one or the fixed one, and no temporary file is left).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from nnxlint import timings

Result = TypeVar("Result")
PR_SET_PDEATHSIG = 1  # linux/prctl.h

_parent: Optional[int] = None  # in a worker: the pid of the process it must not outlive
_writing = False
_terminated = False


def can_isolate() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def die_with_parent(parent: int) -> None:
    """Make this (freshly forked) process end when ``parent`` does; usable as a pool initializer."""
    global _parent
    _parent = parent
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    signal.signal(signal.SIGTERM, _on_terminate)
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _on_terminate(signum, frame) -> None:
    global _terminated
    if _writing:
        _terminated = True  # ``writing`` exits once the write is whole
    else:
        os._exit(1)


def parent_alive() -> bool:
    """False in a worker whose run is gone: it must not touch the user's files."""
    return _parent is None or os.getppid() == _parent


@contextmanager
def writing() -> Iterator[None]:
    """A write that a termination request must not cut in half."""
    global _writing
    _writing = True
    try:
        yield
    finally:
        _writing = False
        if _terminated:
            os._exit(1)


@contextmanager
def collecting_once() -> Iterator[None]:
    """The block without the cyclic garbage collector, then one collection.  A file's
    parse and rules make hundreds of thousands of objects, and the collector's passes
    over them while they are all alive cost about a tenth of a cold run; the few
    reference cycles they leave (rule and context objects) are freed here instead."""
    if not gc.isenabled():  # nested, or turned off by the caller
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        with timings.stage("garbage collection"):
            gc.collect(0)  # what the block made is all young: the older objects need no new scan


def _serve(connection, parent: int, work: Callable[[str], object]) -> None:
    die_with_parent(parent)
    timings.take()  # the tally forked from the main process is the main process's to report
    gc.freeze()  # what the worker inherited (the project index) is never garbage: never scanned
    while True:
        try:
            path = connection.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        try:
            reply = ("ok", work(path))
        except Exception as error:  # reported by the parent as an internal error for this file
            where = traceback.extract_tb(error.__traceback__)[-1]
            reply = ("error", f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})")
        connection.send(reply)


class _Worker:
    def __init__(self, context, work: Callable[[str], object]) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid(), work), daemon=True)
        self.process.start()
        child.close()
        self.path: Optional[str] = None
        self.started = 0.0

    def give(self, path: str) -> None:
        self.path, self.started = path, time.monotonic()
        self.connection.send(path)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except OSError:
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def _death(exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def run_isolated(paths: Sequence[str], work: Callable[[str], Result], workers: int, time_limit: float,
                 failed: Callable[[str, str], Result]) -> list[Result]:
    """``work(path)`` for every path in forked workers, results in the order of ``paths``.
    A path whose worker died or overran ``time_limit`` seconds gets ``failed(path, why)``."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("fork")
    results: dict[str, Result] = {}
    # the largest files first: a long file taken last would leave the other workers idle
    pending = sorted(paths, key=_size) if workers > 1 else list(reversed(paths))
    pool: list[_Worker] = []
    try:
        pool = [_Worker(context, work) for _ in range(max(1, min(workers, len(paths))))]
        for worker in pool:
            if pending:
                worker.give(pending.pop())
        while any(worker.path is not None for worker in pool):
            busy = [worker for worker in pool if worker.path is not None]
            deadline = min(worker.started for worker in busy) + time_limit
            ready = wait([worker.connection for worker in busy], timeout=max(0.0, deadline - time.monotonic()))
            for worker in busy:
                path = worker.path
                assert path is not None
                if worker.connection in ready:
                    try:
                        kind, value = worker.connection.recv()
                    except (EOFError, OSError):  # it died on this file
                        worker.process.join(5)
                        results[path] = failed(path, f"crashed the parser ({_death(worker.process.exitcode)})")
                        worker = _replace(pool, worker, context, work)
                    else:
                        results[path] = value if kind == "ok" else failed(path, f"internal error: {value}")
                elif time.monotonic() - worker.started >= time_limit:
                    results[path] = failed(path, f"checking took longer than {time_limit:g} s (stopped)")
                    worker = _replace(pool, worker, context, work, kill=True)
                else:
                    continue
                worker.path = None
                if pending:
                    worker.give(pending.pop())
    finally:
        for worker in pool:
            worker.stop(kill=worker.path is not None)
    return [results[path] for path in paths]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _replace(pool: list[_Worker], worker: _Worker, context, work, kill: bool = False) -> _Worker:
    worker.stop(kill=kill)
    fresh = _Worker(context, work)
    pool[pool.index(worker)] = fresh
    return fresh
