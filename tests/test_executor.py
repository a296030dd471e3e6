"""The sandboxed executor: the three PoT styles, every failure class, a hostile corpus, the teacher programs."""
from __future__ import annotations

import json
import math
import os
import secrets
import signal
import socket
from pathlib import Path

import pytest

from solvers.executor import Executor, run_program
from solvers.outcome import Status

HOSTILE = Path(__file__).resolve().parent / "hostile"
OK = Status.OK


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=2, timeout=1.0, memory_mb=256) as ex:
        yield ex


# --- answer styles ---------------------------------------------------------------------------

@pytest.mark.parametrize("program, expected", [
    ("a = 3\nb = 4\nans = a * b", 12),
    ("ans = 7 / 2", 3.5),
    ("ans = 10 / 4 * 2", 5),  # integral floats become ints
    ("def solution():\n    return 2 ** 10", 1024),
    ("def solver():\n    x = 5\n    return x * 3", 15),
    ("def solution(n=4):\n    return n + 1", 5),
    ("print('the answer is', 42)", 42),
    ("print(1)\nprint('total: 1,234.5')", 1234.5),
    ("def solution():\n    return 1\nans = 2", 2),  # `ans` wins
    ("import math\nans = math.sqrt(16) + math.floor(2.7)", 6),
    ("import numpy as np\nans = np.mean(np.array([1, 2, 3, 4]))", 2.5),
    # numpy.random is preloaded only in the sympy flavour, where policy.flavour_of sends this
    ("import numpy as np\nans = int(np.random.default_rng(0).integers(5, 6))", 5),
    ("from fractions import Fraction\nans = Fraction(3, 4) * 2", 1.5),
    ("from decimal import Decimal\nans = Decimal('2.5') * 2", 5),
    ("import sympy\nx = sympy.symbols('x')\nans = sympy.solve(sympy.Eq(2 * x + 3, 11), x)[0]", 4),
    ("class Box:\n    def __init__(self, n):\n        self.n = n\nans = Box(9).n", 9),
    ("if __name__ == '__main__':\n    ans = 1", 1),
])
def test_answer_styles(executor, program, expected):
    outcome = executor.run(program)
    assert outcome.status is OK, outcome
    assert outcome.prediction == expected and type(outcome.prediction) is type(expected)


@pytest.mark.parametrize("program, status, detail", [
    ("ans = (", Status.SYNTAX, "SyntaxError"),
    ("x = 1", Status.NO_ANSWER, ""),
    ("print('no digits here')", Status.NO_ANSWER, ""),
    ("ans = 'seven'", Status.NON_NUMERIC, "str"),
    ("ans = [1, 2]", Status.NON_NUMERIC, "list"),
    ("ans = float('inf')", Status.NON_NUMERIC, ""),
    ("ans = None", Status.NON_NUMERIC, "NoneType"),
    ("ans = 1 / 0", Status.RUNTIME, "ZeroDivisionError: division by zero"),
    ("ans = undefined_name", Status.RUNTIME, "NameError"),
    ("raise SystemExit(3)", Status.RUNTIME, "SystemExit"),
    ("while True:\n    pass", Status.TIMEOUT, ""),
    ("x = [0] * (10 ** 10)", Status.MEMORY, ""),
    ("import os", Status.FORBIDDEN, "os"),
    ("ans = open('/etc/passwd')", Status.FORBIDDEN, "open"),
])
def test_failure_classes(executor, program, status, detail):
    outcome = executor.run(program)
    assert outcome.status is status, outcome
    assert outcome.prediction is None and detail in outcome.detail


def test_order_preserved_and_mixed_failures(executor):
    programs = [f"ans = {i}" if i % 97 else "while True: pass" for i in range(1, 400)]
    outcomes = executor.run_many(programs)
    assert [o.prediction for o in outcomes] == [i if i % 97 else None for i in range(1, 400)]
    assert all(o.status is Status.TIMEOUT for i, o in enumerate(outcomes, 1) if i % 97 == 0)


def test_non_string_program(executor):
    assert executor.run_many([None])[0].status is Status.SYNTAX  # type: ignore[list-item]


def test_stdout_is_capped_and_last_number_kept(executor):
    outcome = executor.run("for i in range(200000):\n    print('line', i)")
    assert outcome.status is OK and outcome.prediction == 199999


def test_taint_does_not_reach_later_programs(executor):
    programs = ["import math\nmath.sqrt = lambda x: 42\nans = math.sqrt(4)",
                "import math\nans = math.sqrt(4)",
                "import decimal\ndecimal.getcontext().prec = 1\nans = decimal.Decimal(2) / 3",
                "import decimal\nans = decimal.Decimal(2) / 3"]
    outcomes = executor.run_many(programs * 3)
    assert [o.prediction for o in outcomes] == [42, 2, 0.7, 0.6666666666666666] * 3


def test_isolation_layers_reported(executor):
    layers = set(executor.isolation)
    assert {"python-policy", "rlimits", "fork-per-program", "not-dumpable"} <= layers
    if os.geteuid() == 0:
        assert {"network-namespace", "ipc-namespace", "chroot", "nproc", "seccomp", "no-new-privs"} <= layers


def test_run_program_one_shot():
    assert run_program("ans = 6 * 7").prediction == 42
    assert run_program("while True: pass", timeout=0.5).status is Status.TIMEOUT


# --- hostile corpus --------------------------------------------------------------------------

def _hostile_cases() -> list[tuple[str, str, set[Status]]]:
    cases = []
    for path in sorted(HOSTILE.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        expect = source.splitlines()[0].removeprefix("# expect:").split()
        cases.append((path.stem, source, {Status(e) for e in expect}))
    return cases


def test_hostile_corpus_has_no_escapes(executor, tmp_path):
    cases = _hostile_cases()
    assert len(cases) >= 40
    secret = secrets.token_hex(8)
    scratch = Path("/tmp") / f"distill-hostile-{secret}"  # world-reachable, unlike pytest's tmp_path
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    try:
        canary = scratch / "canary.txt"
        canary.write_text(f"7{int(secret, 16) % 10**6}")
        canary.chmod(0o644)
        victim = scratch / "victim.txt"
        victim.write_text("keep me")
        victim.chmod(0o666)
        write_target = scratch / "written.txt"
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]

        def fill(source: str) -> str:
            return (source.replace("{CANARY}", str(canary)).replace("{WRITE}", str(write_target))
                    .replace("{VICTIM}", str(victim)).replace("{PORT}", str(port))
                    .replace("{IPC_KEY}", str(int(secret[:6], 16) + (1 << 24)))  # System V: see test_sandbox_integrity
                    .replace("{SHM_READ_KEY}", "1").replace("{SHM_WRITE_KEY}", "2"))

        parent_pid = os.getpid()
        outcomes = executor.run_many([fill(source) for _, source, _ in cases])
        report = {name: (o.status, o.detail) for (name, _, _), o in zip(cases, outcomes)}
        # Every hostile program is classified as a failure, and as the failure expected of it.
        wrong = {name: r for (name, _, expect), r in zip(cases, report.values()) if r[0] not in expect}
        assert not wrong, wrong
        # No side effects: nothing read, written, deleted or connected; parent and runner intact.
        assert not any(canary.read_text() in o.detail for o in outcomes)
        assert not write_target.exists()
        assert victim.read_text() == "keep me"
        assert sorted(p.name for p in scratch.iterdir()) == ["canary.txt", "victim.txt"]
        with pytest.raises(BlockingIOError):
            listener.accept()
        listener.close()
        assert os.getpid() == parent_pid
    finally:
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()
    # The pool still answers benign programs correctly afterwards.
    assert [o.prediction for o in executor.run_many([f"ans = {i} * 2" for i in range(50)])] == list(range(0, 100, 2))


def test_zygote_kill_is_survived(executor):
    """A worker whose zygote dies (here: the whole process group killed) is replaced."""
    for worker in [w for workers in executor._workers.values() for w in workers]:
        os.killpg(worker.proc.pid, signal.SIGKILL)
    assert [o.prediction for o in executor.run_many(["ans = 5"] * 10)] == [5] * 10


# --- recorded teacher programs ---------------------------------------------------------------

def _recorded(shared: Path) -> list[tuple[str, float | None]]:
    items = []
    for name in ("svamp_pot_codex.jsonl", "multiarith_pot_codex_zeroshot.jsonl"):
        for line in (shared / "recorded" / name).open(encoding="utf-8"):
            record = json.loads(line)
            if "generated" in record:
                generated = record["generated"]
                items.append((generated[0] if isinstance(generated, list) else generated, record["executed"]))
    return items


def test_recorded_teacher_programs_reproduce(shared_data):
    """`executed` was recorded by the PoT harness, which took abs() of negative answers and the first
    element of a tuple; we keep the sign and call a tuple non-numeric (see docs/sandbox.md)."""
    items = _recorded(shared_data)
    with Executor(timeout=1.0) as ex:
        outcomes = ex.run_many([program for program, _ in items])
    mismatches = []
    for (program, executed), outcome in zip(items, outcomes):
        if executed is None:
            ok = not outcome.is_ok
        elif outcome.is_ok:
            ok = math.isclose(abs(outcome.prediction), executed, rel_tol=1e-6, abs_tol=1e-9)
        else:
            ok = outcome.status is Status.NON_NUMERIC and "tuple" in outcome.detail
        if not ok:
            mismatches.append((program[-200:], executed, outcome))
    assert len(items) == 1598  # 999 SVAMP + 599 MultiArith records
    assert not mismatches, mismatches[:5]
    negative = sum(o.is_ok and o.prediction < 0 for o in outcomes)
    assert negative == 23  # the recorded abs() cases, see docs/sandbox.md


def test_an_interrupted_call_leaves_no_answers_for_the_next(monkeypatch):
    """Interrupted while batches are out (Ctrl-C), the busy workers are replaced, so their late answers
    cannot be read as the next call's."""
    import select as real_select

    import solvers.executor as module

    class InterruptOnce:
        armed = True

        @classmethod
        def select(cls, *args):
            if cls.armed:
                cls.armed = False
                raise KeyboardInterrupt
            return real_select.select(*args)

    with Executor(workers=1, timeout=1.0) as ex:
        monkeypatch.setattr(module, "select", InterruptOnce)
        with pytest.raises(KeyboardInterrupt):
            ex.run_many([f"ans = {i}" for i in range(32)])
        monkeypatch.setattr(module, "select", real_select)
        assert [o.prediction for o in ex.run_many([f"ans = {1000 + i}" for i in range(32)])] == list(range(1000, 1032))
