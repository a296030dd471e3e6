"""A sandbox worker: a locked-down zygote that forks one fresh child per program.

Protocol with the pool (stdin / stdout of the zygote, little-endian):
- job (pool -> zygote): `<I size><B kind>` and `size` bytes of UTF-8 text; kind `p` is a Python
  program (program of thought), `e` an equation-of-thought text for the symbolic solver, `t` the
  code cells of a tool-integrated trace (a JSON list of sources, run as a notebook: `run_cells`).
- reply (zygote -> pool), one per job, in the order the jobs finish: `<I size><I seq><B how><i code>`
  and `size` bytes that the child wrote on its own pipe (`seq`: the job's number, counted from 0 in
  the order sent; `how`: see the constants below; `code`: exit status or signal).
- the first message of the zygote is a reply-framed greeting whose bytes are `ready\\tlayer,...`.

Integrity (docs/sandbox.md): the zygote never runs untrusted code and holds at most one job's text,
in a fixed buffer that it clears after the fork, and other jobs' results only in fixed buffers that
it clears once sent, so a child's memory holds no other program's text or result. Up to
`CHILDREN` jobs run at once, each in its own child. The child writes its result on a pipe made for it alone; the zygote only frames those
bytes (the pool parses them strictly) and adds its own observation of how the child ended. The
wall-clock limit is the zygote's: it SIGKILLs the child at `timeout` after the fork, whatever the
child does. Nothing a child changes survives it: the next program runs in a new fork.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import resource
import select
import signal
import struct
import sys
import time
from types import FunctionType

from solvers.answers import to_number
from solvers.sandbox import lockdown, policy

JOB = struct.Struct("<IB")
REPLY = struct.Struct("<IIBi")
MAX_JOB = 4 * 100_000 + 64  # a program of policy's 100,000 characters, every one 4 bytes of UTF-8
MAX_RESULT = 16 * 1024
MAX_EXACT = 4000  # characters of an exact answer's srepr
# How a child ended, as the zygote saw it.
EXITED, KILLED, SIGNALED, OVERFLOW = 0, 1, 2, 3
CHILD_DONE = 117  # exit status of a child that stopped by itself (a program calling os._exit can't fake 0)
_STDOUT_CAP = 64 * 1024
CELL_CHARS = 2000  # characters kept of a TIR cell's output (its head and tail) and of its displayed value
MAX_CELLS = 32
_MAX_DIGITS = 4000
CHILDREN = 2  # jobs a zygote runs at once (so that a core never waits for a fork or an exit)
_MAX_FDS = 32  # the zygote's RLIMIT_NOFILE: every descriptor it can hold is below this
_POLL = 0.5  # how often a waiting zygote checks that the pool is still alive
_PRINTED_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?")


class _Stdout:
    """What programs print: only the last `_STDOUT_CAP` characters are kept, and the first
    `CELL_CHARS` (a TIR cell's output is shown head and tail)."""

    __slots__ = ("parts", "size", "head", "total")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.head = ""
        self.total = 0

    def write(self, text: str) -> None:
        if len(self.head) < CELL_CHARS:
            self.head += text[:CELL_CHARS - len(self.head)]
        self.total += len(text)
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * _STDOUT_CAP:
            tail = "".join(self.parts)[-_STDOUT_CAP:]
            self.parts, self.size = [tail], len(tail)

    def text(self) -> str:
        return "".join(self.parts)[-_STDOUT_CAP:]


class _State:
    stdout = _Stdout()


def _print(*args, sep=" ", end="\n", file=None, flush=False) -> None:
    _State.stdout.write((" " if sep is None else sep).join([str(a) for a in args]) + ("\n" if end is None else end))


_BUILTINS = policy.make_builtins(_print)


def result(status: str, value: int | float | None = None, detail: str = "", exact: str | None = None) -> bytes:
    """A child's result record (parsed by `solvers.executor.parse_result`)."""
    return json.dumps([status, value, detail[:300], exact], ensure_ascii=True, allow_nan=False).encode()


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except BaseException:  # a hostile __str__
        return type(error).__name__


def _exact(value: object) -> str | None:
    """SymPy's `srepr` of a SymPy answer (bounded); the pool checks its grammar."""
    sympy = sys.modules.get("sympy")
    if sympy is None or not isinstance(value, (sympy.Basic, sympy.MatrixBase)):
        return None
    text = sympy.srepr(value)
    return text if isinstance(text, str) and len(text) <= MAX_EXACT else None


def _value(value: object, what: str) -> bytes:
    exact = _exact(value)
    number = to_number(value)
    if number is None:
        return result("non-numeric", None, f"{what} is {type(value).__name__}", exact)
    if isinstance(number, int) and number.bit_length() > _MAX_DIGITS * 3.32:
        return result("non-numeric", None, f"{what} has more than {_MAX_DIGITS} digits", exact)
    return result("ok", number, "", exact)


def _zero_arg(function: object) -> bool:
    if not isinstance(function, FunctionType):
        return False
    code = function.__code__
    return code.co_argcount <= len(function.__defaults__ or ()) and code.co_kwonlyargcount <= len(function.__kwdefaults__ or {})


def _answer(namespace: dict) -> bytes:
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
        return result("no-answer", None, "no ans, solution() or printed number")
    return _value(float(found.group().replace(",", "")), "printed number")


def run_program(source: str) -> bytes:
    """Compile, check and execute one program in this (throw-away) process; its result record."""
    try:
        code = policy.compile_program(source)
    except policy.Rejected as e:
        return result(e.status, None, str(e))
    namespace = {"__builtins__": _BUILTINS, "__name__": "__main__"}
    _State.stdout = _Stdout()  # (the zygote's warm-up printed)
    policy.reset_denied()
    try:
        exec(code, namespace)
        line = _answer(namespace)
    except policy.Forbidden as e:
        line = result("forbidden", None, str(e))
    except MemoryError:
        line = result("memory", None, "MemoryError")
    except PermissionError as e:  # the OS layer said no
        line = result("forbidden", None, _describe(e))
    except BaseException as e:
        line = result("runtime", None, _describe(e))
    # A verdict a program cannot talk its way out of by catching the exception.
    if (denied := policy.denied()) is not None:
        return result("forbidden", None, denied)
    return line


def _cell_output(stdout: _Stdout, error: BaseException | str | None) -> str:
    """What a notebook shows for a cell: its printed text (a long one cut to its head and tail,
    `...` between), then the error line if it raised."""
    half = (CELL_CHARS - 5) // 2
    text = stdout.head if stdout.total <= CELL_CHARS else f"{stdout.head[:half]}\n...\n{stdout.text()[-half:]}"
    if error is not None:
        line = error if isinstance(error, str) else _describe(error)
        text += ("" if not text or text.endswith("\n") else "\n") + line[:300]
    return text


_SHOWN = "_cell_display_value"  # where a cell's last expression is kept for display


def _compile_cell(source: str) -> tuple[object, bool]:
    """A cell checked by the policy, compiled so that the value of a last expression (not a
    print call) lands in `_SHOWN`, as a notebook displays it; (code, whether it does)."""
    import ast

    code = policy.compile_program(source)  # raises Rejected
    try:
        tree = ast.parse(source)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return code, False
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr) or (isinstance(last.value, ast.Call) and isinstance(last.value.func, ast.Name)
                                          and last.value.func.id == "print"):
        return code, False
    tree.body[-1] = ast.copy_location(ast.Assign([ast.Name(_SHOWN, ast.Store())], last.value), last)
    return compile(ast.fix_missing_locations(tree), "<program>", "exec", dont_inherit=True), True


def run_cells(text: str) -> bytes:
    """Tool-integrated reasoning: the code cells of one trace (a JSON list of sources) run in order
    in one namespace, as in a notebook; per cell what it printed (with the error line if it raised)
    and the repr of its last expression. A forbidden operation or memory exhaustion ends the trace."""
    try:
        cells = json.loads(text)
    except ValueError:
        cells = None
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        return _cells_result("syntax", [], "cells are not a JSON list of strings")
    namespace = {"__builtins__": _BUILTINS, "__name__": "__main__"}
    outputs: list[list[str | None]] = []
    status, detail = "ok", ""
    policy.reset_denied()
    for source in cells[:MAX_CELLS]:
        _State.stdout = _Stdout()
        try:
            code, shows = _compile_cell(source)
        except policy.Rejected as e:
            if e.status != "syntax":
                status, detail = e.status, str(e)
                break
            outputs.append([_cell_output(_State.stdout, str(e)), None])
            continue
        try:
            exec(code, namespace)
            value = namespace.pop(_SHOWN, None) if shows else None
            shown = None if value is None else repr(value)[:CELL_CHARS]
            outputs.append([_cell_output(_State.stdout, None), shown])
        except policy.Forbidden as e:
            status, detail = "forbidden", str(e)
            break
        except MemoryError:
            status, detail = "memory", "MemoryError"
            break
        except PermissionError as e:  # the OS layer said no
            status, detail = "forbidden", _describe(e)
            break
        except BaseException as e:
            outputs.append([_cell_output(_State.stdout, e), None])
        if (denied := policy.denied()) is not None:
            status, detail = "forbidden", denied
            break
    return _cells_result(status, outputs, detail)


def _cells_result(status: str, outputs: list[list[str | None]], detail: str) -> bytes:
    """The result record of a trace, cut to fit the result buffer (later cells' text first)."""
    while True:
        data = json.dumps(["cells", status, detail[:300], outputs], ensure_ascii=True).encode()
        if len(data) <= MAX_RESULT - 64 or not outputs:
            return data
        widest = max(range(len(outputs)), key=lambda i: sum(len(t or "") for t in outputs[i]))
        outputs[widest] = [None if t is None else t[:len(t) // 2] for t in outputs[widest]]


def run_equations(text: str, timeout: float) -> bytes:
    """The symbolic EoT solver on one text (only in the "sympy" flavour)."""
    from solvers.equations import solve_symbolic

    outcome = solve_symbolic(text, timeout)
    return result(str(outcome.status), outcome.prediction, outcome.detail)


class _Child:
    """A running job: its process, the pipe it writes its result on, what it wrote so far."""

    __slots__ = ("seq", "pid", "exited", "pipe", "buffer", "got", "deadline")

    def __init__(self, seq: int, pid: int, pipe: int, buffer: bytearray, deadline: float) -> None:
        self.seq, self.pid, self.pipe, self.buffer, self.got, self.deadline = seq, pid, pipe, buffer, 0, deadline
        self.exited = os.pidfd_open(pid)  # readable once the child has exited


class Zygote:
    def __init__(self, config: dict) -> None:
        self.timeout: float = config["timeout"]
        self.memory = config["memory_mb"] << 20
        self.parent = os.getppid()
        self.job = bytearray(MAX_JOB)
        self.header = bytearray(JOB.size)
        self.buffers = [bytearray(MAX_RESULT + 1) for _ in range(CHILDREN)]  # free result buffers
        self.children: dict[int, _Child] = {}  # by pidfd and by pipe
        self.seq = 0
        self.layers = ["python-policy", "fork-per-program"]
        self.statm = os.open("/proc/self/statm", os.O_RDONLY)
        self.child_filter = lockdown.SeccompFilter(child=True)
        self._lock_down(config)

    def _lock_down(self, config: dict) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of killing
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        with open("/proc/self/status") as f:
            threads = int(next(line for line in f if line.startswith("Threads:")).split()[1])
        lockdown.close_fds_except({0, 1, 2, self.statm})
        root = os.geteuid() == 0
        if lockdown.unshare_namespaces():
            self.layers += ["network-namespace", "ipc-namespace"]
        lockdown.enter_empty_directory(f"distill-sandbox-{self.parent}-")
        if root:
            uid = config["uid_base"] + os.getpid()
            if lockdown.chroot_and_drop(uid):
                self.layers += ["chroot", f"uid-{uid}"]
                if lockdown.set_limit(resource.RLIMIT_NPROC, threads + CHILDREN):
                    self.layers.append("nproc")
        limits = [(resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, _MAX_FDS),
                  (resource.RLIMIT_AS, lockdown.address_space_bytes(self.statm) + self.memory + (512 << 20))]
        if all(lockdown.set_limit(which, value) for which, value in limits):
            self.layers.append("rlimits")
        if lockdown.not_dumpable():
            self.layers.append("not-dumpable")
        if lockdown.no_new_privs():
            self.layers.append("no-new-privs")
        if lockdown.SeccompFilter(child=False).install():
            self.layers.append("seccomp")
            if self.child_filter.allow_list:
                self.layers.append("seccomp-allowlist")

    # -- the loop ----------------------------------------------------------------------------
    def serve(self) -> None:
        self._reply(0, EXITED, 0, ("ready\t" + ",".join(self.layers)).encode())
        reading = True
        while reading or self.children:
            watched = list(self.children) + ([0] if reading and len(self.buffers) else [])
            ready = select.select(watched, [], [], self._wait())[0]
            if not ready and not self._alive():
                self._abandon()
            for fd in ready:
                if fd == 0:
                    reading = self._start_next()
                elif fd in self.children:
                    self._service(self.children[fd], fd)
            self._enforce()

    def _alive(self) -> bool:
        return os.getppid() == self.parent

    def _abandon(self) -> None:
        """The pool is gone: kill the children and exit."""
        for child in set(self.children.values()):
            os.kill(child.pid, signal.SIGKILL)
        sys.exit(0)

    def _wait(self) -> float:
        now = time.monotonic()
        return max(0.0, min([c.deadline - now for c in self.children.values()] + [_POLL]))

    def _enforce(self) -> None:
        """Kill every child past its wall-clock limit."""
        now = time.monotonic()
        for child in set(self.children.values()):
            if now >= child.deadline:
                self._finish(child, KILLED)

    def _read_into(self, view: memoryview) -> bool:
        """Fill `view` from stdin (limits kept meanwhile); False at end of input."""
        pos = 0
        while pos < len(view):
            if not select.select([0], [], [], self._wait())[0]:
                if not self._alive():
                    self._abandon()
                self._enforce()
                continue
            got = os.readv(0, [view[pos:]])
            if not got:
                return False
            pos += got
        return True

    def _start_next(self) -> bool:
        """Read the next job and fork its child; False at end of input."""
        if not self._read_into(memoryview(self.header)):
            return False
        size, kind = JOB.unpack(self.header)
        if size > MAX_JOB or not self._read_into(memoryview(self.job)[:size]):
            return False  # the pool never sends a larger one: stop rather than read it
        limit = lockdown.address_space_bytes(self.statm) + self.memory
        result_r, result_w = os.pipe()
        zygote = os.getpid()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(kind, size, result_w, limit, zygote)
        os.close(result_w)
        self.job[:size] = bytes(size)  # the next child must not find this text in its memory
        child = _Child(self.seq, pid, result_r, self.buffers.pop(), start + self.timeout)
        self.seq += 1
        self.children[child.pipe] = self.children[child.exited] = child
        return True

    def _service(self, child: _Child, fd: int) -> None:
        if fd == child.exited:
            self._finish(child, EXITED)
            return
        view = memoryview(child.buffer)
        n = os.readv(child.pipe, [view[child.got:]])
        child.got += n
        if child.got > MAX_RESULT:
            self._finish(child, OVERFLOW)
        elif not n:  # end of file (the child closed its pipe): wait for its exit alone
            del self.children[child.pipe]
            os.close(child.pipe)
            child.pipe = -1

    def _finish(self, child: _Child, how: int) -> None:
        """Reap the child, answer for its job, clear its buffer."""
        if how != EXITED:
            os.kill(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        view = memoryview(child.buffer)
        if child.pipe >= 0:
            if how == EXITED:  # what it wrote after our last read
                os.set_blocking(child.pipe, False)
                with contextlib.suppress(BlockingIOError):
                    while child.got <= MAX_RESULT and (n := os.readv(child.pipe, [view[child.got:]])):
                        child.got += n
                if child.got > MAX_RESULT:
                    how = OVERFLOW
            del self.children[child.pipe]
            os.close(child.pipe)
        del self.children[child.exited]
        os.close(child.exited)
        if how != EXITED:
            code, data = 0, view[:0]
        elif os.WIFSIGNALED(status):
            how, code, data = SIGNALED, os.WTERMSIG(status), view[:0]
        else:
            code, data = os.WEXITSTATUS(status), view[:child.got]
        self._reply(child.seq, how, code, data)  # written from the buffer itself: no copy left behind
        view[:child.got] = bytes(child.got)
        self.buffers.append(child.buffer)

    def _child(self, kind: int, size: int, result_w: int, limit: int, zygote: int) -> None:
        try:
            # The children still running when this one was forked may have written part of their result
            # into the zygote's buffers already: this child's copy of them goes before its program runs
            # (a full-suite run caught a hostile program reading a neighbour's result there, under load).
            for other in set(self.children.values()):
                other.buffer[:other.got] = bytes(other.got)
            # Every descriptor goes but the result pipe: the pool's pipes (and the next jobs queued in
            # them), the other children's pipes and pidfds.
            os.closerange(0, result_w)
            os.closerange(result_w + 1, _MAX_FDS)
            lockdown.set_limit(resource.RLIMIT_AS, limit)
            lockdown.set_limit(resource.RLIMIT_CPU, int(self.timeout) + 1)
            lockdown.set_limit(resource.RLIMIT_NPROC, 0)
            if not lockdown.die_with_parent() or os.getppid() != zygote:
                return
            self.child_filter.install(os.getpid())
            text = bytes(self.job[:size]).decode("utf-8", "surrogatepass")
            self.job[:size] = bytes(size)
            data = (run_program(text) if kind == ord("p") else run_cells(text) if kind == ord("t")
                    else run_equations(text, self.timeout))
            while data:
                data = data[os.write(result_w, data):]
        finally:
            os._exit(CHILD_DONE)

    @staticmethod
    def _reply(seq: int, how: int, code: int, data: bytes | memoryview) -> None:
        parts = [memoryview(REPLY.pack(len(data), seq, how, code)), memoryview(data)]
        while parts:
            written = os.writev(1, parts)
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if parts:
                parts[0] = parts[0][written:]


# Run in the zygote before it serves (our own programs): the first compile, exec and result record
# of a process initialise lazy state, which would otherwise be paid again, page faults included,
# in every child.
_WARM_UP = ("import math\nimport numpy as np\na = 3\nb = 4.5\nans = math.floor(a * b) + np.sqrt(4)",
            "def solution():\n    total = sum([1, 2, 3])\n    return total / 4\n",
            "print('The answer is', 1234.5)", "ans = undefined_name")
_WARM_UP_EOT = ("x * y = 12\nx + y = 7\nx > y\nans = x", "a = sqrt(2)\nb = floor(a * 10) / 3\nans = b + a**2",
                "t = 120 / (x + 2)\nt = 20\nans = x")


def main(config_json: str) -> None:
    config = json.loads(config_json)
    policy.preload(config["flavour"])
    if config["flavour"] == "sympy":
        import solvers.equations  # noqa: F401  (the symbolic EoT path runs in these workers' children)
    zygote = Zygote(config)
    for program in _WARM_UP:
        run_program(program)
    if config["flavour"] == "sympy":
        for text in _WARM_UP_EOT:
            run_equations(text, 5.0)
    gc.collect()
    gc.freeze()  # keeps the collector from touching (and copying) the zygote's pages in children
    zygote.serve()


if __name__ == "__main__":
    main(sys.argv[1])
