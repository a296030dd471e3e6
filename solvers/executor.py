"""Sandboxed execution of model-written Python programs (program-of-thought checking).

    with Executor() as ex:
        outcomes = ex.run_many(programs)     # list[Outcome], order preserved

The answer of a program is, in this order: the variable `ans`; else the return value of a
zero-argument `solution()` or `solver()`; else the last number it printed. See docs/sandbox.md
for the threat model: what the isolation promises (confinement and integrity) and what not.

Design: a pool of zygote processes (`solvers/sandbox/worker.py`). Each starts from a clean
interpreter, preloads the allowed modules, locks itself down (network and IPC namespaces, chroot,
unprivileged uid, rlimits, seccomp) and then runs jobs, a few at once, each in a fresh fork that
holds no other program's text, under a seccomp allow list, killed at the wall-clock limit by the
zygote. The result is a record the child writes on its own pipe; it is parsed here, strictly
(`parse_result`): plain numbers, bounded strings, nothing executed. This pool also times every job
from outside (the backstop) and replaces a worker that stops answering or dies.

Three flavours of worker: "plain" (the standard modules), "numpy" (also numpy) and "sympy" (also
SymPy); a program goes to the lightest flavour that preloads what its text names (a fork of a
larger interpreter costs more), so the choice depends on its text alone. Flavours other than those
in `eager` start on first use.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from solvers.answers import to_number
from solvers.outcome import Cells, Outcome, Status
from solvers.sandbox import policy
from solvers.sandbox.exact import canonical_srepr
from solvers.sandbox.worker import (CELL_CHARS, CHILD_DONE, CHILDREN, EXITED, JOB, KILLED, MAX_CELLS, MAX_JOB,
                                    MAX_RESULT, OVERFLOW, REPLY)

_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from solvers.sandbox.worker import main; main(sys.argv[2])"
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1"}
_UID_BASE = 1_000_000_000  # root only: worker uid = base + zygote pid, unique among live workers
_START_TIMEOUT = 120.0
_DEPTH = 2 * CHILDREN  # jobs written ahead to a worker, so that it never waits for the pool
_MAX_DIGITS = 4000
FLAVOURS = tuple(policy.FLAVOURS)
KINDS = {"pot": ord("p"), "eot": ord("e"), "tir": ord("t")}
# What a child may report about its own job; anything else (and every limit) is decided outside it.
_CHILD_STATUSES = {
    "pot": frozenset({Status.OK, Status.NON_NUMERIC, Status.NO_ANSWER, Status.SYNTAX, Status.RUNTIME,
                      Status.FORBIDDEN, Status.MEMORY}),
    "eot": frozenset({Status.OK, Status.NON_NUMERIC, Status.PARSE, Status.UNSUPPORTED, Status.INCONSISTENT,
                      Status.UNDER_DETERMINED, Status.AMBIGUOUS, Status.TIMEOUT}),
    "tir": frozenset({Status.OK, Status.SYNTAX, Status.FORBIDDEN, Status.MEMORY}),
}


class SandboxError(RuntimeError):
    """A worker could not be started."""


class _Worker:
    """One zygote process, the pipes to it and the jobs written to it that it has not answered."""

    def __init__(self, config: dict, flavour: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, _ROOT, json.dumps({**config, "flavour": flavour})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_ENV, start_new_session=True,  # own process group, killed as a whole
        )
        self.fd, self.fd_in = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        os.set_blocking(self.fd_in, False)
        self.buffer = bytearray()  # read, not yet parsed
        self.outgoing = bytearray()  # jobs not yet written
        self.jobs: dict[int, int] = {}  # seq -> job index, written or queued and unanswered
        self.seq = 0  # the next job's number (the zygote counts the same way)
        self.since = 0.0  # last sign of progress while jobs are out (the backstop's clock)
        self.layers: tuple[str, ...] = ()
        self.ready = False  # its greeting read (`wait_ready`)

    def wait_ready(self, deadline: float) -> None:
        while (message := self.receive()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise SandboxError("sandbox worker did not start in time")
            if not self.fill():
                raise SandboxError(f"sandbox worker exited during start-up (status {self.proc.poll()})")
        kind, _, layers = message[3].decode("ascii", "replace").partition("\t")
        if kind != "ready":
            raise SandboxError(f"unexpected greeting from sandbox worker: {kind!r}")
        self.layers = tuple(layers.split(","))
        self.ready = True

    def push(self, index: int, payload: bytes, now: float) -> None:
        if not self.jobs:
            self.since = now
        self.jobs[self.seq] = index
        self.seq += 1
        self.outgoing += payload

    def flush(self) -> bool:
        """Write what the pipe takes; False if the worker is gone."""
        try:
            written = os.write(self.fd_in, self.outgoing)
        except BlockingIOError:
            return True
        except OSError:  # broken pipe: a dead worker
            return False
        del self.outgoing[:written]
        return True

    def fill(self) -> bool:
        """Read what is available (call when readable); False at end of file."""
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def receive(self) -> tuple[int, int, int, bytes] | None:
        """The next reply (seq, how, code, child's bytes), if complete."""
        if len(self.buffer) < REPLY.size:
            return None
        size, seq, how, code = REPLY.unpack_from(self.buffer)
        if len(self.buffer) < REPLY.size + size:
            return None
        data = bytes(self.buffer[REPLY.size:REPLY.size + size])
        del self.buffer[:REPLY.size + size]
        return seq, how, code, data

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # the zygote exits at end of input
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def _malformed() -> Outcome:
    return Outcome.fail(Status.RUNTIME, "malformed result from the sandbox")


def _no_constant(name: str) -> None:
    raise ValueError(name)  # NaN / Infinity: not a number a program may return


def _record(data: bytes) -> list | None:
    """A child's record: a JSON list of four items in ASCII within the result limit, else None."""
    if len(data) > MAX_RESULT:
        return None
    try:
        record = json.loads(data.decode("ascii"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return record if type(record) is list and len(record) == 4 else None


def parse_result(data: bytes, kind: str = "pot") -> Outcome:
    """A child's result record, checked field by field: `[status, value, detail, exact]` in JSON, the
    value a plain int (at most 4,000 digits) or finite float, the exact answer a srepr in the
    vocabulary of `solvers.sandbox.exact`. Anything else is a malformed result."""
    record = _record(data)
    if record is None:
        return _malformed()
    status, value, detail, exact = record
    if type(status) is not str or type(detail) is not str or status not in {s.value for s in _CHILD_STATUSES[kind]}:
        return _malformed()
    exact = None if exact is None else canonical_srepr(exact)
    if status != Status.OK:
        return _malformed() if value is not None else Outcome.fail(Status(status), detail, exact)
    if type(value) is int and value.bit_length() <= _MAX_DIGITS * 3.33:
        return Outcome(value, Status.OK, "", exact)
    if type(value) is float and math.isfinite(value):
        return Outcome(to_number(value), Status.OK, "", exact)
    return _malformed()


def _short_text(value: object, limit: int) -> bool:
    return type(value) is str and len(value) <= limit


def parse_cells(data: bytes) -> Cells | Outcome:
    """A TIR child's record, checked field by field: `["cells", status, detail, outputs]`, each
    output a pair (printed text, displayed repr or null) of bounded strings; else malformed."""
    record = _record(data)
    if record is None or record[0] != "cells":
        return _malformed()
    _, status, detail, outputs = record
    if (type(status) is not str or status not in {s.value for s in _CHILD_STATUSES["tir"]}
            or not _short_text(detail, 300) or type(outputs) is not list or len(outputs) > MAX_CELLS):
        return _malformed()
    cells = []
    for cell in outputs:
        if (type(cell) is not list or len(cell) != 2 or not _short_text(cell[0], CELL_CHARS + 301)
                or not (cell[1] is None or _short_text(cell[1], CELL_CHARS))):
            return _malformed()
        cells.append((cell[0], cell[1]))
    return Cells(tuple(cells), Status(status), detail)


def _verdict(how: int, code: int, data: bytes, kind: str, timeout: float) -> Outcome | Cells:
    """The outcome of a job from the zygote's account of how its child ended."""
    if how == KILLED:
        return Outcome.fail(Status.TIMEOUT, f"killed after {timeout:g} s")
    if how == OVERFLOW:
        return Outcome.fail(Status.RUNTIME, f"result larger than {MAX_RESULT} bytes")
    if how != EXITED:
        if code == signal.SIGXCPU:
            return Outcome.fail(Status.TIMEOUT, "CPU time limit")
        if code == signal.SIGSYS:
            return Outcome.fail(Status.FORBIDDEN, "blocked system call")
        name = signal.Signals(code).name if code in signal.valid_signals() else str(code)
        return Outcome.fail(Status.RUNTIME, f"sandbox process died ({name})")
    if code != CHILD_DONE:
        return Outcome.fail(Status.RUNTIME, f"program exited the process (status {code})")
    return parse_cells(data) if kind == "tir" else parse_result(data, kind)


def _shutdown(workers: dict[str, list[_Worker]]) -> None:
    for flavour in workers.values():
        for worker in flavour:
            worker.close()
        flavour.clear()


class Executor:
    """A warm pool of sandboxed workers. Use as a context manager, or call `close()`.

    `timeout` is the wall-clock limit per program in seconds; `memory_mb` is the address space a
    program may use beyond the preloaded interpreter; `workers` per flavour (default: one per
    core); `eager` names the flavours started at once (the others start on first use).
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, memory_mb: int = 512,
                 eager: Sequence[str] = ("plain",)) -> None:
        self.timeout = float(timeout)
        self._size = max(1, workers or os.cpu_count() or 1)
        self._config = {"timeout": self.timeout, "memory_mb": int(memory_mb), "uid_base": _UID_BASE}
        self._lock = threading.Lock()
        self._workers: dict[str, list[_Worker]] = {flavour: [] for flavour in FLAVOURS}
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        try:
            for flavour in eager:
                self._start(flavour)
        except BaseException:
            self.close()
            raise

    def _start(self, flavour: str) -> None:
        started = [_Worker(self._config, flavour) for _ in range(self._size)]
        self._workers[flavour] += started
        deadline = time.monotonic() + _START_TIMEOUT
        for worker in started:
            worker.wait_ready(deadline)

    @property
    def isolation(self) -> tuple[str, ...]:
        """The isolation layers active in the workers, e.g. ("seccomp", "chroot", ...)."""
        return next((w.layers for ws in self._workers.values() for w in ws if w.ready), ())

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._finalizer()

    def run(self, program: str) -> Outcome:
        return self.run_many([program])[0]

    def run_many(self, programs: Sequence[str], kind: str = "pot") -> list[Outcome]:
        """Run every job on the workers; outcomes in the order of `programs`. `kind` "eot" solves
        equation-of-thought texts with the symbolic solver instead (solvers.equations)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Executor is closed")
            return self._run_many(list(programs), kind)

    def run_cells(self, traces: Sequence[Sequence[str]]) -> list[Cells]:
        """Run the code cells of each trace in order, in one namespace per trace (a notebook),
        every trace in its own fork; `Cells` in the order of `traces`."""
        texts = [json.dumps(list(cells)) if not isinstance(cells, str) and all(isinstance(c, str) for c in cells)
                 else None for cells in traces]
        outcomes = self.run_many(texts, kind="tir")  # type: ignore[arg-type]
        return [o if isinstance(o, Cells) else Cells((), o.status, o.detail) for o in outcomes]

    def _run_many(self, texts: list[str], kind: str) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(texts)
        queues: dict[str, deque[int]] = {flavour: deque() for flavour in FLAVOURS}
        payloads: dict[int, bytes] = {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                results[i] = Outcome.fail(Status.PARSE if kind == "eot" else Status.SYNTAX,
                                          f"program is {type(text).__name__}, not str")
                continue
            data = text.encode("utf-8", "surrogatepass")
            if len(data) > MAX_JOB:
                results[i] = Outcome.fail(Status.FORBIDDEN, f"program longer than {MAX_JOB} bytes")
                continue
            payloads[i] = JOB.pack(len(data), KINDS[kind]) + data
            queues["sympy" if kind == "eot" else policy.flavour_of(text)].append(i)
        for flavour, queue in queues.items():
            if queue and not self._workers[flavour]:
                self._start(flavour)
        try:
            self._serve(kind, payloads, queues, results)
        except BaseException:  # interrupted: the workers' late answers would reach the next call
            for flavour, workers in self._workers.items():
                for slot, worker in enumerate(workers):
                    if worker.jobs:
                        with contextlib.suppress(Exception):  # else it is replaced at its next job
                            self._replace(flavour, slot)
            raise
        return results  # type: ignore[return-value]

    def _serve(self, kind: str, payloads: dict[int, bytes], queues: dict[str, deque[int]],
               results: list[Outcome | None]) -> None:
        """Keep every worker fed, collect the answers, and time each job from outside."""
        deaths: dict[int, int] = {}  # job -> workers lost while it ran
        backstop = 2 * self.timeout + 0.5  # the zygote kills at `timeout`; this catches a stuck zygote
        while True:
            now = time.monotonic()
            readers, writers, deadline = {}, [], math.inf
            for flavour, workers in self._workers.items():
                for slot, worker in enumerate(workers):
                    queue = queues[flavour]
                    if queue and not worker.ready:
                        worker.wait_ready(now + _START_TIMEOUT)
                    while queue and len(worker.jobs) < _DEPTH:
                        i = queue.popleft()
                        worker.push(i, payloads[i], now)
                    if worker.outgoing and not worker.flush():
                        self._lost(flavour, slot, queues, results, deaths, "sandbox worker died")
                        continue
                    if worker.jobs:
                        readers[worker.fd] = (flavour, slot)
                        deadline = min(deadline, worker.since + backstop)
                        if worker.outgoing:
                            writers.append(worker.fd_in)
            if not readers:
                if any(queues.values()):
                    continue
                return
            readable = select.select(list(readers), writers, [], max(0.0, deadline - now))[0]
            for fd in readable:
                flavour, slot = readers[fd]
                worker = self._workers[flavour][slot]
                alive, stray = worker.fill(), False
                while (reply := worker.receive()) is not None:
                    seq, *verdict = reply
                    if seq not in worker.jobs:  # answered what it was not asked: not our zygote any more
                        stray = True
                        break
                    results[worker.jobs.pop(seq)] = _verdict(*verdict, kind, self.timeout)
                    worker.since = time.monotonic()
                if not alive or stray:
                    self._lost(flavour, slot, queues, results, deaths, "sandbox worker died")
            now = time.monotonic()
            for flavour, slot in readers.values():
                worker = self._workers[flavour][slot]
                if worker.jobs and now >= worker.since + backstop:
                    self._lost(flavour, slot, queues, results, deaths, "sandbox worker stopped answering")

    def _replace(self, flavour: str, slot: int) -> None:
        """Kill the slot's worker and start another; its greeting is read before its first job."""
        self._workers[flavour][slot].kill()
        self._workers[flavour][slot] = _Worker(self._config, flavour)

    def _lost(self, flavour: str, slot: int, queues: dict[str, deque[int]], results: list, deaths: dict[int, int],
              why: str) -> None:
        """Replace a dead or stuck worker and queue its unanswered jobs again. A job is given up when
        three workers were lost while it was out (a program cannot end its zygote: this is for a
        zygote killed from outside, or a bug)."""
        jobs = self._workers[flavour][slot].jobs
        self._replace(flavour, slot)
        for index in sorted(jobs.values(), reverse=True):
            deaths[index] = deaths.get(index, 0) + 1
            if deaths[index] < 3:
                queues[flavour].appendleft(index)
            else:
                results[index] = Outcome.fail(Status.RUNTIME, why)


_shared: dict[tuple[float, str], Executor] = {}
_shared_lock = threading.Lock()


def shared_executor(timeout: float, flavour: str = "plain") -> Executor:
    """A one-worker pool per (timeout, flavour), started on first use and closed at exit."""
    with _shared_lock:
        executor = _shared.get((timeout, flavour))
        if executor is None:
            executor = _shared[(timeout, flavour)] = Executor(workers=1, timeout=timeout, eager=(flavour,))
            atexit.register(executor.close)
    return executor


def run_program(program: str, timeout: float = 5.0) -> Outcome:
    """Run one program in a shared one-worker sandbox (started on first use, closed at exit)."""
    return shared_executor(timeout).run(program)
