"""A sandbox worker: a locked-down zygote that compiles programs and forks one child per batch.

Protocol with the pool (stdin / stdout of the zygote, each message a 4-byte little-endian
length and a payload): the pool sends a pickled `list[str]` of programs; the zygote answers with
UTF-8 text, one line `status \\t value \\t detail` per program, in order. The first message from
the zygote is `ready \\t layer,layer,...`.

A child runs the programs of a batch one after another and records each result in shared
memory as soon as it has one, so that the zygote can attribute a crash or a hang to the program
that caused it, kill the child from outside (wall clock), and carry on with a fresh child.
"""
from __future__ import annotations

import gc
import json
import mmap
import os
import pickle
import re
import resource
import select
import signal
import struct
import sys
import time
from types import CodeType, FunctionType

from solvers.answers import to_number
from solvers.sandbox import lockdown, policy

_HEADER = struct.Struct("<QQd")  # bytes used, results written, start time of the current program
_SHM_BYTES = 8 << 20
_GRACE = 0.25  # the in-child timer gets this long to stop a program before the zygote kills it
_STDOUT_CAP = 64 * 1024
_MAX_DIGITS = 4000
_CHILD_DONE = 117  # exit status of a child that stopped by itself (a program calling os._exit can't fake 0)
_PRINTED_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?")


class _Timeout(BaseException):
    pass


class _Stdout:
    """What programs print: only the last `_STDOUT_CAP` characters are kept."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * _STDOUT_CAP:
            tail = "".join(self.parts)[-_STDOUT_CAP:]
            self.parts, self.size = [tail], len(tail)

    def text(self) -> str:
        return "".join(self.parts)[-_STDOUT_CAP:]


class _State:
    armed = False  # whether SIGALRM should interrupt (only while a program runs)
    stdout = _Stdout()


def _print(*args, sep=" ", end="\n", file=None, flush=False) -> None:
    _State.stdout.write((" " if sep is None else sep).join([str(a) for a in args]) + ("\n" if end is None else end))


def _on_alarm(signum, frame) -> None:
    if _State.armed:
        raise _Timeout


_BUILTINS = policy.make_builtins(_print)


def _clean(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")[:300]


def _line(status: str, value: int | float | None = None, detail: str = "") -> str:
    return f"{status}\t{'' if value is None else repr(value)}\t{_clean(detail)}\n"


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except BaseException:  # a hostile __str__
        return type(error).__name__


def _value(value: object, what: str) -> str:
    number = to_number(value)
    if number is None:
        return _line("non-numeric", None, f"{what} is {type(value).__name__}")
    if isinstance(number, int) and number.bit_length() > _MAX_DIGITS * 3.33:
        return _line("non-numeric", None, f"{what} has more than {_MAX_DIGITS} digits")
    return _line("ok", number)


def _zero_arg(function: object) -> bool:
    if not isinstance(function, FunctionType):
        return False
    code = function.__code__
    return code.co_argcount <= len(function.__defaults__ or ()) and code.co_kwonlyargcount <= len(function.__kwdefaults__ or {})


def _answer(namespace: dict) -> str:
    """The three program-of-thought styles: `ans`, `solution()` / `solver()`, last printed number."""
    if "ans" in namespace:
        return _value(namespace["ans"], "ans")
    for name in ("solution", "solver"):
        if _zero_arg(namespace.get(name)):
            return _value(namespace[name](), f"{name}()")
    found = None
    for found in _PRINTED_NUMBER.finditer(_State.stdout.text()):
        pass
    if found is None:
        return _line("no-answer", None, "no ans, solution() or printed number")
    return _value(float(found.group().replace(",", "")), "printed number")


def run_one(code: CodeType, timeout: float) -> str:
    """Execute one compiled program in this process; the result line."""
    namespace = {"__builtins__": _BUILTINS, "__name__": "__main__"}
    _State.stdout = _Stdout()
    policy.reset_denied()
    start = time.monotonic()
    try:
        try:
            _State.armed = True
            # Re-fires every 50 ms, so a program that swallows the first alarm gets the next ones.
            signal.setitimer(signal.ITIMER_REAL, timeout, 0.05)
            exec(code, namespace)
            line = _answer(namespace)
        finally:
            _State.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        line = _line("timeout", None, f"exceeded {timeout:g} s")
    except policy.Forbidden as e:
        line = _line("forbidden", None, str(e))
    except MemoryError:
        line = _line("memory", None, "MemoryError")
    except PermissionError as e:  # the OS layer said no
        line = _line("forbidden", None, _describe(e))
    except BaseException as e:
        line = _line("runtime", None, _describe(e))
    # Verdicts a program cannot talk its way out of by catching the exception.
    if (denied := policy.denied()) is not None:
        return _line("forbidden", None, denied)
    if time.monotonic() - start >= timeout:
        return _line("timeout", None, f"exceeded {timeout:g} s")
    return line


class Zygote:
    def __init__(self, config: dict) -> None:
        self.timeout: float = config["timeout"]
        self.memory = config["memory_mb"] << 20
        self.cache: dict[str, tuple[CodeType, bool] | policy.Rejected] = {}
        self.shm = mmap.mmap(-1, _SHM_BYTES)
        self.layers = ["python-policy", "fork-per-batch"]
        self.statm = os.open("/proc/self/statm", os.O_RDONLY)
        self.child_filter = lockdown.SeccompFilter(child=True)
        self._lock_down(config)

    def _lock_down(self, config: dict) -> None:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of killing
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        with open("/proc/self/status") as f:
            threads = int(next(line for line in f if line.startswith("Threads:")).split()[1])
        lockdown.close_fds_except({0, 1, 2, self.statm})
        root = os.geteuid() == 0
        if lockdown.unshare_network():
            self.layers.append("network-namespace")
        if root:
            uid = config["uid_base"] + os.getpid()
            if lockdown.chroot_and_drop(config["jail"], uid):
                self.layers += ["chroot", f"uid-{uid}"]
                if lockdown.set_limit(resource.RLIMIT_NPROC, threads + 1):
                    self.layers.append("nproc")
        else:
            os.chdir(config["jail"])
        limits = [(resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 32),
                  (resource.RLIMIT_AS, lockdown.address_space_bytes(self.statm) + self.memory + (512 << 20))]
        if all(lockdown.set_limit(which, value) for which, value in limits):
            self.layers.append("rlimits")
        if lockdown.no_new_privs():
            self.layers.append("no-new-privs")
        if lockdown.SeccompFilter(child=False).install():
            self.layers.append("seccomp")

    def compile(self, source: str) -> tuple[CodeType, bool] | policy.Rejected:
        entry = self.cache.get(source)
        if entry is None:
            try:
                entry = policy.compile_program(source)
            except policy.Rejected as e:
                entry = e
            if len(self.cache) >= 50_000:
                self.cache.clear()
            self.cache[source] = entry
        return entry

    def run_batch(self, programs: list[str]) -> str:
        lines: list[str] = [""] * len(programs)
        todo: list[tuple[int, CodeType, bool]] = []
        for i, source in enumerate(programs):
            entry = self.compile(source) if isinstance(source, str) else policy.Rejected("syntax", "not a string")
            if isinstance(entry, policy.Rejected):
                lines[i] = _line(entry.status, None, str(entry))
            else:
                todo.append((i, *entry))
        pos = 0
        while pos < len(todo):
            pos = self._run_child(todo, pos, lines)
        return "".join(lines)

    def _run_child(self, todo: list[tuple[int, CodeType, bool]], pos: int, lines: list[str]) -> int:
        """Fork a child for todo[pos:]; returns how far it got (including a program it died on)."""
        _HEADER.pack_into(self.shm, 0, 0, 0, time.monotonic())
        limit = lockdown.address_space_bytes(self.statm) + self.memory
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(done_r)
            self._child(todo, pos, limit, done_w)
        os.close(done_w)
        timed_out = self._watch(pid, done_r)
        os.close(done_r)
        _, wait_status = os.waitpid(pid, 0)
        used, _, _ = _HEADER.unpack_from(self.shm, 0)
        results = self.shm[_HEADER.size:_HEADER.size + min(used, _SHM_BYTES - _HEADER.size)].decode("utf-8", "replace")
        got = results.splitlines(keepends=True)[: len(todo) - pos]
        for j, line in enumerate(got):
            lines[todo[pos + j][0]] = line
        pos += len(got)
        failure = self._death(wait_status, timed_out)
        if failure is None and not got and pos < len(todo):  # cannot happen short of a bug; never loop
            failure = _line("runtime", None, "no result from the sandbox")
        if failure is not None and pos < len(todo):
            lines[todo[pos][0]] = failure
            pos += 1
        return pos

    def _watch(self, pid: int, done_r: int) -> bool:
        """Wait for the child to exit; kill it if one program overruns. True if killed."""
        seen, observed = -1, time.monotonic()
        while True:
            _, count, started = _HEADER.unpack_from(self.shm, 0)
            now = time.monotonic()
            if count != seen:
                seen, observed = count, now
            # Trust the child's own start stamp only as far as our observation of its progress.
            deadline = min(max(started, observed - self.timeout), observed) + self.timeout + _GRACE
            if now >= deadline:
                os.kill(pid, signal.SIGKILL)
                return True
            if select.select([done_r], [], [], deadline - now)[0] and not os.read(done_r, 64):
                return False

    def _death(self, wait_status: int, timed_out: bool) -> str | None:
        if timed_out:
            return _line("timeout", None, f"killed after {self.timeout:g} s")
        if os.WIFSIGNALED(wait_status):
            sig = os.WTERMSIG(wait_status)
            name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
            if sig == signal.SIGXCPU:
                return _line("timeout", None, "CPU time limit")
            if sig == signal.SIGSYS:
                return _line("forbidden", None, "blocked system call")
            return _line("runtime", None, f"sandbox process died ({name})")
        code = os.WEXITSTATUS(wait_status)
        return None if code == _CHILD_DONE else _line("runtime", None, f"program exited the process (status {code})")

    def _child(self, todo: list[tuple[int, CodeType, bool]], pos: int, limit: int, done_w: int) -> None:
        try:
            # Every descriptor goes, the pool's pipes included: results travel through memory only.
            os.closerange(0, done_w)
            os.closerange(done_w + 1, 64)
            remaining = len(todo) - pos
            lockdown.set_limit(resource.RLIMIT_AS, limit)
            lockdown.set_limit(resource.RLIMIT_CPU, int(remaining * self.timeout) + 2)
            lockdown.set_limit(resource.RLIMIT_NPROC, 0)
            lockdown.die_with_parent()
            self.child_filter.install(os.getpid())
            shm, used = self.shm, 0
            room = _SHM_BYTES - _HEADER.size
            for n, (_, code, mutates_shared) in enumerate(todo[pos:], 1):
                _HEADER.pack_into(shm, 0, used, n - 1, time.monotonic())
                data = run_one(code, self.timeout).encode("utf-8", "replace")
                if used + len(data) > room:
                    break  # out of room: the zygote reruns the rest in a fresh child
                shm[_HEADER.size + used:_HEADER.size + used + len(data)] = data
                used += len(data)
                _HEADER.pack_into(shm, 0, used, n, time.monotonic())
                if mutates_shared:
                    break  # a fresh child for the rest, so that this program's changes die with it
        finally:
            os._exit(_CHILD_DONE)

    def serve(self) -> None:
        self._send(("ready\t" + ",".join(self.layers)).encode())
        while True:
            header = _read_exact(0, 4)
            if header is None:
                return
            payload = _read_exact(0, struct.unpack("<I", header)[0])
            if payload is None:
                return
            self._send(self.run_batch(pickle.loads(payload)).encode("utf-8", "replace"))

    @staticmethod
    def _send(data: bytes) -> None:
        data = struct.pack("<I", len(data)) + data
        while data:
            data = data[os.write(1, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main(config_json: str) -> None:
    config = json.loads(config_json)
    policy.preload()
    zygote = Zygote(config)
    gc.collect()
    gc.freeze()  # keeps the collector from touching (and copying) the zygote's pages in children
    zygote.serve()


if __name__ == "__main__":
    main(sys.argv[1])
