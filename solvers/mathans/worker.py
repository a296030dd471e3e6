"""Symbolic comparisons in worker processes, under a hard per-answer time limit and a memory cap.

SymPy and the ANTLR parser can run for minutes on some inputs (`((((...))))` nested a few dozen
deep, huge powers) inside C code where no Python-level timeout fires. Each worker is a plain
subprocess (`python -m solvers.mathans.worker`, JSON lines on its pipes); one that overruns its
limit is killed (SIGKILL) and replaced, so one pathological answer never stalls a batch.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path

MEMORY_LIMIT = 2 << 30  # bytes of address space per worker; a runaway answer fails with MemoryError
_ROOT = str(Path(__file__).resolve().parents[2])  # so that `solvers` imports in the child

Result = tuple[str, bool, str]  # (status, equal, detail)


def serve(memory: int) -> None:
    """The worker's loop: one JSON [pred, gold] per stdin line, one [status, equal, detail] back."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    from solvers.mathans.symbolic import Unparsable, symbolic_equal

    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        pred, gold = json.loads(line)
        try:
            reply = ["ok", bool(symbolic_equal(pred, gold)), ""]
        except Unparsable as exc:
            reply = ["unparsable", False, f"not LaTeX the parser reads: {exc}"]
        except MemoryError:
            reply = ["unparsable", False, "comparison ran out of memory"]
        except Exception as exc:  # a SymPy failure on one answer is that answer's verdict, not a crash
            reply = ["unparsable", False, f"{type(exc).__name__}: {str(exc)[:200]}"]
        out.write(json.dumps(reply) + "\n")
        out.flush()


class _Worker:
    def __init__(self, memory: int):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "solvers.mathans.worker", str(memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, close_fds=True,
        )
        self.ready = False
        self.job: int | None = None
        self.deadline = 0.0

    def send(self, job: int, pair: tuple[str, str], timeout: float) -> None:
        self.job, self.deadline = job, time.monotonic() + timeout
        self.proc.stdin.write(json.dumps(pair) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> object:
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError("worker exited")
        return json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:  # a pipe to a killed process may fail to flush
                pass


class WorkerPool:
    """Up to `workers` processes answering (pred, gold) pairs; `run` keeps every one busy."""

    def __init__(self, workers: int = 1, timeout: float = 2.0, memory: int = MEMORY_LIMIT):
        if workers < 1 or timeout <= 0:
            raise ValueError("workers must be >= 1 and timeout > 0")
        self.timeout, self.memory, self.size = timeout, memory, workers
        self._workers: list[_Worker] = []
        self._spare: _Worker | None = None  # started after the first kill, so that the next one costs no start-up
        self._pid = os.getpid()

    def run(self, pairs: Sequence[tuple[str, str]], on_result: Callable[[int, Result], None]) -> None:
        """Compare every pair, calling on_result(index, result) as each ends (in any order)."""
        if os.getpid() != self._pid:  # a forked copy must not share the parent's pipes
            self._workers, self._spare, self._pid = [], None, os.getpid()
        while len(self._workers) < min(self.size, len(pairs)):
            self._workers.append(_Worker(self.memory))
        todo = list(range(len(pairs)))[::-1]
        while True:
            for w in self._workers:
                if w.ready and w.job is None and todo:
                    job = todo.pop()
                    try:
                        w.send(job, pairs[job], self.timeout)
                    except OSError:
                        self._replace(w, on_result, "unparsable", "worker process died")
            waiting = [w for w in self._workers if w.job is not None or (not w.ready and todo)]
            if not waiting:
                return
            now = time.monotonic()
            deadlines = [w.deadline - now for w in waiting if w.job is not None]
            by_fd = {w.proc.stdout.fileno(): w for w in waiting}
            for fd in wait(list(by_fd), timeout=max(0.0, min(deadlines)) if deadlines else None):
                w = by_fd[fd]
                try:
                    msg = w.receive()
                except (EOFError, OSError, ValueError):  # died (e.g. killed by the OOM killer)
                    if not w.ready:  # never started: a replacement would not either
                        self.close()
                        raise RuntimeError("the symbolic-comparison worker failed to start; run "
                                           "`python -m solvers.mathans.worker` to see why") from None
                    self._replace(w, on_result, "unparsable", "worker process died")
                    continue
                if msg == "ready":
                    w.ready = True
                else:
                    job, w.job = w.job, None
                    on_result(job, tuple(msg))  # type: ignore[arg-type]
            now = time.monotonic()
            for w in list(self._workers):
                if w.job is not None and now >= w.deadline:
                    self._replace(w, on_result, "timeout", f"symbolic comparison exceeded {self.timeout:g} s")

    def _replace(self, w: _Worker, on_result: Callable[[int, Result], None], status: str, detail: str) -> None:
        if w.job is not None:
            on_result(w.job, (status, False, detail))
        w.kill()
        self._workers[self._workers.index(w)] = self._spare or _Worker(self.memory)
        self._spare = _Worker(self.memory)

    def close(self) -> None:
        for w in self._workers + ([self._spare] if self._spare else []):
            w.kill()
        self._workers, self._spare = [], None


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_LIMIT)
