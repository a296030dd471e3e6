"""Sandboxed execution of model-written Python programs (program-of-thought checking).

    with Executor() as ex:
        outcomes = ex.run_many(programs)     # list[Outcome], order preserved

The answer of a program is, in this order: the variable `ans`; else the return value of a
zero-argument `solution()` or `solver()`; else the last number it printed. See docs/sandbox.md
for the isolation layers and what they do and do not promise.

Design: a pool of worker processes (`solvers/sandbox/worker.py`). Each starts from a clean
interpreter, preloads the allowed modules, locks itself down (network namespace, chroot,
unprivileged uid, rlimits, seccomp) and then serves batches: it compiles the programs (with a
cache) and forks one child per batch which runs them one after another, with a further seccomp
filter and memory limit. The zygote kills a child whose program overruns the wall-clock limit
and carries on with a fresh child; this pool kills a whole worker that stops answering.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from solvers.outcome import Outcome, Status

_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from solvers.sandbox.worker import main; main(sys.argv[2])"
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1"}
_UID_BASE = 1_000_000_000  # root only: worker uid = base + zygote pid, unique among live workers
_START_TIMEOUT = 120.0
_MIN_BATCH = 32


class SandboxError(RuntimeError):
    """A worker could not be started."""


class _Worker:
    """One zygote process and the pipes to it."""

    def __init__(self, config: dict, jail: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, _ROOT, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_ENV, cwd=jail, start_new_session=True,  # own process group, killed as a whole
        )
        self.fd = self.proc.stdout.fileno()
        self.buffer = bytearray()
        self.layers: tuple[str, ...] = ()
        self.ready = False  # its greeting read (`wait_ready`)

    def wait_ready(self, deadline: float) -> None:
        while (message := self.receive()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise SandboxError("sandbox worker did not start in time")
            if not self.fill():
                raise SandboxError(f"sandbox worker exited during start-up (status {self.proc.poll()})")
        kind, _, layers = message.decode().partition("\t")
        if kind != "ready":
            raise SandboxError(f"unexpected greeting from sandbox worker: {kind!r}")
        self.layers = tuple(layers.split(","))
        self.ready = True

    def send(self, programs: list[str]) -> bool:
        payload = pickle.dumps(programs, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack("<I", len(payload)) + payload)
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # a dead worker: broken or closed pipe
            return False

    def fill(self) -> bool:
        """Read what is available (call when readable); False at end of file."""
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def receive(self) -> bytes | None:
        if len(self.buffer) < 4:
            return None
        size = struct.unpack_from("<I", self.buffer)[0]
        if len(self.buffer) < 4 + size:
            return None
        message = bytes(self.buffer[4:4 + size])
        del self.buffer[:4 + size]
        return message

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # stdin still held a payload the dead worker never read: the flush fails
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the zygote exits at end of input
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def _parse(text: str, n: int) -> list[Outcome] | None:
    """The zygote's answer for a batch of `n` programs; None if malformed."""
    lines = text.split("\n")
    if len(lines) != n + 1 or lines[-1]:
        return None
    outcomes = []
    for line in lines[:-1]:
        status, value, detail = (line.split("\t", 2) + ["", ""])[:3]
        try:
            status = Status(status)
            if status is Status.OK:
                outcomes.append(Outcome.ok(int(value) if value.lstrip("-").isdigit() else float(value)))
                continue
        except ValueError:
            status, detail = Status.RUNTIME, "malformed result from the sandbox"
        outcomes.append(Outcome.fail(status, detail))
    return outcomes


def _batch_size(programs: int, workers: int, cap: int) -> int:
    """Programs per batch: several batches per worker balance the load; large batches amortise the
    fork (about a millisecond, forty typical programs' worth), so none is cut below _MIN_BATCH
    programs unless that would leave a worker idle."""
    return max(1, min(cap, max(math.ceil(programs / (4 * workers)), min(_MIN_BATCH, math.ceil(programs / workers)))))


def _shutdown(workers: list[_Worker], jail: str) -> None:
    for worker in workers:
        worker.close()
    workers.clear()
    shutil.rmtree(jail, ignore_errors=True)


class Executor:
    """A warm pool of sandboxed workers. Use as a context manager, or call `close()`.

    `timeout` is the wall-clock limit per program in seconds; `memory_mb` is the address space a
    program may use beyond the preloaded interpreter; `batch_size` caps the programs sent to a
    worker at once (one fork per batch).
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, memory_mb: int = 512,
                 batch_size: int = 1024) -> None:
        self.timeout = float(timeout)
        self.batch_size = max(1, batch_size)
        self._config = {"timeout": self.timeout, "memory_mb": int(memory_mb), "uid_base": _UID_BASE}
        self._jail = tempfile.mkdtemp(prefix="distill-sandbox-")  # empty; root-only 0700
        self._config["jail"] = self._jail
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._jail)
        try:
            self._workers += [_Worker(self._config, self._jail) for _ in range(workers or os.cpu_count() or 1)]
            deadline = time.monotonic() + _START_TIMEOUT
            for worker in self._workers:
                worker.wait_ready(deadline)
        except BaseException:
            self.close()
            raise

    @property
    def isolation(self) -> tuple[str, ...]:
        """The isolation layers active in the workers, e.g. ("seccomp", "chroot", ...)."""
        return self._workers[0].layers if self._workers else ()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()

    def run(self, program: str) -> Outcome:
        return self.run_many([program])[0]

    def run_many(self, programs: Sequence[str]) -> list[Outcome]:
        """Run all programs on all workers; outcomes in the order of `programs`."""
        with self._lock:
            if not self._workers:
                raise RuntimeError("Executor is closed")
            return self._run_many(list(programs))

    def _run_many(self, programs: list[str]) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(programs)
        runnable = []
        for i, program in enumerate(programs):
            if isinstance(program, str):
                runnable.append(i)
            else:
                results[i] = Outcome.fail(Status.SYNTAX, f"program is {type(program).__name__}, not str")
        size = _batch_size(len(runnable), len(self._workers), self.batch_size)
        queue = deque(runnable[i:i + size] for i in range(0, len(runnable), size))
        idle = list(range(len(self._workers)))
        busy: dict[int, tuple[int, list[int], float]] = {}  # fd -> (worker slot, job, deadline)
        try:
            self._serve(programs, queue, idle, busy, results)
        except BaseException:  # interrupted: the busy workers' answers would reach the next call
            for slot, _, _ in busy.values():
                with contextlib.suppress(Exception):  # else the dead worker is replaced at its next job
                    self._replace(slot)
            raise
        return results  # type: ignore[return-value]

    def _serve(self, programs: list[str], queue: deque, idle: list[int], busy: dict[int, tuple[int, list[int], float]],
               results: list[Outcome | None]) -> None:
        """Hand out the queued batches to idle workers and collect their answers until all are in."""
        deaths: dict[int, int] = {}  # program -> workers lost while it ran alone
        while queue or busy:
            while queue and idle:
                slot, job = idle.pop(), queue.popleft()
                worker = self._workers[slot]
                if not worker.ready:
                    worker.wait_ready(time.monotonic() + _START_TIMEOUT)
                # Backstop only: the zygote itself enforces the per-program limit.
                deadline = time.monotonic() + len(job) * 2 * (self.timeout + 1) + 10
                if worker.send([programs[i] for i in job]):
                    busy[worker.fd] = (slot, job, deadline)
                else:
                    self._failed(slot, job, queue, results, deaths, "sandbox worker died")
                    idle.append(slot)
            wait = max(0.0, min(deadline for _, _, deadline in busy.values()) - time.monotonic()) if busy else 0
            readable = select.select(list(busy), [], [], wait)[0] if busy else []
            for fd in readable:
                slot, job, _ = busy[fd]
                worker = self._workers[slot]
                alive = worker.fill()
                message = worker.receive()
                if message is not None:
                    outcomes = _parse(message.decode("utf-8", "replace"), len(job))
                    if outcomes is None:
                        self._failed(slot, job, queue, results, deaths, "malformed answer from the sandbox")
                    else:
                        for i, outcome in zip(job, outcomes):
                            results[i] = outcome
                elif alive:
                    continue
                else:
                    self._failed(slot, job, queue, results, deaths, "sandbox worker died")
                del busy[fd]
                idle.append(slot)
            now = time.monotonic()
            for fd, (slot, job, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[fd]
                    self._failed(slot, job, queue, results, deaths, "sandbox worker stopped answering")
                    idle.append(slot)

    def _replace(self, slot: int) -> None:
        """Kill the slot's worker and start another; its greeting is read before its first job."""
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._config, self._jail)

    def _failed(self, slot: int, job: list[int], queue: deque, results: list, deaths: dict[int, int], why: str) -> None:
        """Replace a dead or stuck worker; retry its batch one program at a time to find the culprit.
        A program is blamed when a worker is lost twice while running it alone: the first loss may
        be a worker that had died before the program reached it (killed from outside)."""
        self._replace(slot)
        if len(job) > 1:
            queue.extendleft([i] for i in reversed(job))
            return
        deaths[job[0]] = deaths.get(job[0], 0) + 1
        if deaths[job[0]] < 2:
            queue.appendleft(job)
        else:
            results[job[0]] = Outcome.fail(Status.RUNTIME, why)


_shared: dict[float, Executor] = {}
_shared_lock = threading.Lock()


def run_program(program: str, timeout: float = 5.0) -> Outcome:
    """Run one program in a shared one-worker sandbox (started on first use, closed at exit)."""
    with _shared_lock:
        executor = _shared.get(timeout)
        if executor is None:
            executor = _shared[timeout] = Executor(workers=1, timeout=timeout)
            atexit.register(executor.close)
    return executor.run(program)
