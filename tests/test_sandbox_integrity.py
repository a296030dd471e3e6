"""Integrity of the sandbox, checked from outside: an attacker's program followed by benign ones in
the same batch (and the same zygote) must leave their answers right; nothing may be left on the
host (System V objects, processes, jail directories); limits hold within 2x; SIGTERM / SIGINT /
SIGKILL of the pool mid-batch end every worker. The attacks are the `integrity_*`, `ipc_*`,
`deadline_*`, `kill_*` and `proc_*` programs of tests/hostile/; for tool-integrated traces (job
kind `t`) the traces of tests/hostile/cells/ and those programs again as a cell of a trace.
"""
from __future__ import annotations

import ctypes
import glob
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from solvers.executor import CELL_CHARS, MAX_CELLS, Executor, parse_cells, parse_result
from solvers.outcome import Cells, Outcome, Status

HOSTILE = Path(__file__).resolve().parent / "hostile"
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 1.0
# Benign programs whose answers depend on state an attacker may try to change. Each also runs in
# the "numpy" and "sympy" workers (a comment naming the module routes it there), so that it meets
# every attacker in the same zygote.
PROBES = [
    ("ans = 3 + 4", 7),
    ("import math\nans = math.sqrt(16)", 4),
    ("ans = round(2.5) + round(3.5) + len([1, 2])", 8),
    ("import decimal\nans = decimal.Decimal(1) / decimal.Decimal(3)", 0.3333333333333333),
    ("import numpy as np\nans = int(np.isinf(np.float64(1) / np.float64(0)))", 1),
    ("import re\nans = len(re.findall('x', 'xxx'))", 3),
    ("import copy\nans = copy.deepcopy([1, 2])[0]", 1),
    ("import random\nans = int(random.random() != 0.8444218515250481)", 1),  # not random.seed(0)'s first draw
    ("def solution():\n    return 6 * 7", 42),
]
PROBES += [(f"{program}\n# {module}", expected) for module in ("numpy", "sympy") for program, expected in PROBES]
ATTACKS = sorted(p for p in HOSTILE.glob("*.py") if p.stem.split("_")[0] in ("integrity", "ipc", "deadline", "kill", "proc"))
_IPC_RMID = 0


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    return libc


def _sysv_left() -> set[tuple[str, int, int]]:
    """The host's System V objects made by a sandbox uid (`ipcs`, read from /proc): (kind, key, uid)."""
    found = set()
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            header = f.readline().split()
            for line in f:
                row = dict(zip(header, line.split()))
                if int(row["cuid"]) >= 1_000_000_000:
                    found.add((kind, int(row["key"]), int(row["cuid"])))
    return found


def _sysv_in_workers(executor: Executor) -> list[str]:
    """System V objects inside the workers' own IPC namespaces (where a program's would persist)."""
    lines = []
    for ws in executor._workers.values():
        for w in ws:
            out = subprocess.run(["nsenter", "-t", str(w.proc.pid), "-i", "cat", "/proc/sysvipc/shm",
                                  "/proc/sysvipc/msg", "/proc/sysvipc/sem"], capture_output=True, text=True, check=True)
            lines += [line for line in out.stdout.splitlines() if line.split()[0] != "key"]
    return lines


def _pids_of(uids: set[int]) -> set[int]:
    """Live processes running as one of `uids`."""
    found = set()
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) in uids and fields["State"].split()[0] != "Z":
            found.add(int(fields["Pid"]))
    return found


def _uids_alive(uids: set[int]) -> bool:
    return bool(_pids_of(uids))


def _sandbox_uids(executor: Executor) -> set[int]:
    return {int(layer[4:]) for ws in executor._workers.values() for w in ws for layer in w.layers if layer.startswith("uid-")}


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=1, timeout=TIMEOUT, memory_mb=256, eager=("plain", "numpy", "sympy")) as ex:
        yield ex


@pytest.fixture(scope="module")
def host_segments():
    """Two host segments an attacker would like: one readable by all (a secret), one writable by all."""
    if os.geteuid() != 0:
        pytest.skip("needs root, like the CI")
    libc, secret = _libc(), f"host-{secrets.token_hex(8)}".encode()
    keys, ids = [], []
    for mode, content in ((0o644, secret), (0o666, b"keep me")):
        key = random.randrange(1 << 20, 1 << 30)
        shm = libc.shmget(key, 4096, 0o1000 | mode)  # IPC_CREAT
        assert shm >= 0, ctypes.get_errno()
        at = libc.shmat(shm, None, 0)
        ctypes.memmove(at, content, len(content))
        keys.append(key)
        ids.append((shm, at))
    yield keys, secret, ids
    for shm, at in ids:
        libc.shmdt(ctypes.c_void_p(at))
        libc.shmctl(shm, _IPC_RMID, None)


def _fill(source: str, ipc_key: int, host: tuple) -> str:
    keys = host[0]
    return (source.replace("{IPC_KEY}", str(ipc_key)).replace("{SHM_READ_KEY}", str(keys[0]))
            .replace("{SHM_WRITE_KEY}", str(keys[1])).replace("{CANARY}", "/etc/hostname"))


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda p: p.stem)
def test_attacker_cannot_reach_later_programs_or_the_host(executor, host_segments, attack):
    ipc_key = random.randrange(1 << 20, 1 << 30)
    token = secrets.token_hex(8)
    secret_program = f"# SECRET-{token}\nans = 5"  # another record's text, just before the attacker
    source = _fill(attack.read_text(encoding="utf-8"), ipc_key, host_segments)
    # ... whose result holds it too (in the zygote, results pass through fixed buffers only)
    secrets_ = [f"{secret_program}\n# {module}\nraise ValueError('SECRET-{token}')" for module in ("plain", "numpy", "sympy")]
    programs = secrets_ + [source] + [p for p, _ in PROBES]
    start = time.monotonic()
    outcomes = executor.run_many(programs)
    elapsed = time.monotonic() - start
    expect = {Status(e) for e in attack.read_text().splitlines()[0].removeprefix("# expect:").split()}
    attacker = outcomes[3]
    assert attacker.status in expect, attacker
    # The benign programs, after the attacker in the same workers, answer right.
    assert [o.prediction for o in outcomes[4:]] == [e for _, e in PROBES], [
        (p, o) for (p, _), o in zip(PROBES, outcomes[4:]) if not o.is_ok]
    assert all(token in o.detail for o in outcomes[:3]), outcomes[:3]
    # Nothing read: neither the other programs' text or result nor the host segment's secret came out.
    assert token not in repr(outcomes[3:]) and host_segments[1].decode() not in repr(outcomes)
    if attack.stem.startswith("integrity_read"):
        assert attacker.prediction in (0, None), attacker
    # Nothing written or left: the host segment is intact, no System V object is new.
    assert ctypes.string_at(host_segments[2][1][1], 7) == b"keep me"
    assert not _sysv_left()
    if attack.stem.startswith("ipc_") and shutil.which("nsenter"):
        assert not _sysv_in_workers(executor)
    # Limits: a timeout is one wall-clock limit (plus scheduling), never the attacker's choice.
    if attacker.status is Status.TIMEOUT:
        assert elapsed < 2 * TIMEOUT + 1.0, elapsed


def test_zygotes_survive_attacks_on_them(executor):
    pids = {w.proc.pid for ws in executor._workers.values() for w in ws}
    attacks = [p.read_text() for p in ATTACKS if p.stem.startswith("kill_")]
    outcomes = executor.run_many(attacks + ["ans = 3 + 4"])
    assert all(o.status in (Status.FORBIDDEN, Status.RUNTIME) for o in outcomes[:-1]), outcomes
    assert outcomes[-1].prediction == 7
    assert {w.proc.pid for ws in executor._workers.values() for w in ws} == pids
    assert all(w.proc.poll() is None for ws in executor._workers.values() for w in ws)


def test_no_process_outlives_its_program(executor):
    """A sleeping child of an attacker would run with the worker's uid; none may exist between jobs."""
    fork = next(p for p in ATTACKS if p.stem == "proc_fork_outlive_escape").read_text()
    assert all(o.status in (Status.FORBIDDEN, Status.RUNTIME) for o in executor.run_many([fork] * 4))
    uids = _sandbox_uids(executor)
    if not uids:
        pytest.skip("no uid drop (not root)")
    zygotes = {w.proc.pid for ws in executor._workers.values() for w in ws}
    assert _pids_of(uids) == zygotes


def test_sleepers_do_not_hold_the_pool(executor):
    """Eight sleeping programs (time.sleep through an escape, no CPU used) are each killed at the
    wall-clock limit; the batch costs a few limits, not the sum of their sleeps."""
    sleeper = next(p for p in ATTACKS if p.stem == "deadline_sleep_escape").read_text()
    start = time.monotonic()
    outcomes = executor.run_many([sleeper] * 8 + ["ans = 3 + 4"])
    elapsed = time.monotonic() - start
    assert [o.status for o in outcomes[:-1]] == [Status.TIMEOUT] * 8 and outcomes[-1].prediction == 7
    assert elapsed < 8 * TIMEOUT, elapsed  # the children run side by side


@pytest.mark.parametrize("data, expect", [
    (b'["ok", 7, "", null]', Outcome(7, Status.OK)),
    (b'["ok", 2.5, "", "Rational(5, 2)"]', Outcome(2.5, Status.OK, "", "Rational(5, 2)")),
    (b'["ok", 7, "", null]["ok", 999, "", null]', None),  # two records
    (b'["ok", NaN, "", null]', None),
    (b'["ok", Infinity, "", null]', None),
    (b'["ok", "7", "", null]', None),
    (b'["ok", true, "", null]', None),
    (b'["timeout", null, "", null]', None),  # only the zygote decides a timeout
    (b'["ok", 1' + b"0" * 5000 + b', "", null]', None),
    (b"[" * 100_000, None),
    (b'["non-numeric", null, "ans is X", "__import__(\'os\')"]', Outcome(None, Status.NON_NUMERIC, "ans is X")),
    (b'["non-numeric", null, "", "Interval(Integer(0), oo, false, true)"]',
     Outcome(None, Status.NON_NUMERIC, "", "Interval(Integer(0), oo, false, true)")),
])
def test_results_are_parsed_strictly(data, expect):
    outcome = parse_result(data)
    if expect is None:
        assert outcome.status is Status.RUNTIME and "malformed" in outcome.detail, outcome
    else:
        assert outcome == expect


def test_exact_answers_travel_as_checked_srepr(executor):
    outcomes = executor.run_many([
        "import sympy\nans = sympy.Rational(3, 4)",
        "import sympy\nans = sympy.sqrt(8) / 4",
        "import sympy\nans = sympy.Matrix([[1, 2], [3, 4]])",
        "import sympy\nans = sympy.Interval(0, sympy.pi)",
        "import sympy\nclass Evil(sympy.Integer):\n    pass\nsympy.srepr = lambda e: \"__import__('os')\"\nans = sympy.Integer(3)",
    ])
    assert outcomes[0] == Outcome(0.75, Status.OK, "", "Rational(3, 4)")
    assert outcomes[1].exact == "Mul(Rational(1, 2), Pow(Integer(2), Rational(1, 2)))"
    assert outcomes[2].status is Status.NON_NUMERIC and outcomes[2].exact.startswith("MutableDenseMatrix(")
    assert outcomes[3].exact == "Interval(Integer(0), pi, false, false)"
    assert outcomes[4] == Outcome(3, Status.OK, "", None)  # a forged srepr is dropped, not passed on


def test_nan_and_inf_answers_are_not_numbers(executor):
    outcomes = executor.run_many(["ans = float('nan')", "import numpy as np\nans = np.float64('inf')",
                                  "import decimal\nans = decimal.Decimal('NaN')"])
    assert all(o.status is Status.NON_NUMERIC and o.prediction is None for o in outcomes), outcomes
    assert Outcome.ok(float("nan")).status is Status.NON_NUMERIC


# --- the pool's own death --------------------------------------------------------------------

_POOL = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from solvers.executor import Executor
    ex = Executor(workers=2, timeout=30.0, eager=("plain", "sympy"))
    print(" ".join(str(w.proc.pid) for ws in ex._workers.values() for w in ws), flush=True)
    sleeper = "import operator\\nG = operator.attrgetter('__globals__')(print)\\nG['time'].sleep(60)"
    ex.run_many([sleeper] * 8 + [sleeper + "\\n# sympy"] * 8)
""")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_stopping_the_pool_mid_batch_ends_every_worker(how):
    pool = subprocess.Popen([sys.executable, "-c", _POOL.format(root=str(ROOT))], stdout=subprocess.PIPE, text=True)
    try:
        zygotes = [int(p) for p in pool.stdout.readline().split()]
        assert len(zygotes) == 4
        time.sleep(1.0)  # the sleepers are running
        pool.send_signal(how)
        pool.wait(timeout=10)
    finally:
        pool.kill()
        pool.wait()
    deadline = time.monotonic() + 5
    uids = {1_000_000_000 + pid for pid in zygotes} if os.geteuid() == 0 else set()
    while time.monotonic() < deadline and (any(_pid_alive(p) for p in zygotes) or _uids_alive(uids)):
        time.sleep(0.1)
    assert not any(_pid_alive(p) for p in zygotes)
    assert not _uids_alive(uids)  # no program child either
    assert not glob.glob(f"/tmp/distill-sandbox-{pool.pid}-*")  # no jail directory left


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- load ------------------------------------------------------------------------------------

def _load(records: int) -> None:
    """`records` programs, a tenth of them attacks (in random places), the rest benign programs
    whose answers are known; every benign one must be answered right."""
    rng = random.Random(7)
    attacks = [p.read_text() for p in ATTACKS if not p.stem.startswith(("ipc_sysv_host", "deadline"))]
    attacks += [p.read_text() for p in HOSTILE.glob("res_*.py") if p.stem not in ("res_sleep", "res_infinite_loop", "res_swallow_timeout")]
    benign = [(p, e) for p, e in PROBES if p.startswith(("ans", "import")) and isinstance(e, int)]
    programs, expected = [], []
    for _ in range(records):
        if rng.random() < 0.1:
            programs.append(_fill(rng.choice(attacks), rng.randrange(1 << 20, 1 << 30), ([1, 2],)))
            expected.append(None)
        else:
            (program, answer), a, b = rng.choice(benign), rng.randrange(1000), rng.randrange(1000)
            programs.append(f"x = {a}\ny = {b}\n{program}\nans = ans * 1000000 + x * y")
            expected.append(answer * 1000000 + a * b)
    with Executor(workers=2, timeout=TIMEOUT, memory_mb=256) as ex:
        outcomes = ex.run_many(programs)
        uids = _sandbox_uids(ex)
    wrong = [(p, e, o) for p, e, o in zip(programs, expected, outcomes) if e is not None and o.prediction != e]
    assert not wrong, wrong[:3]
    assert not _sysv_left()
    assert not _uids_alive(uids)


def test_load_with_ten_percent_hostile():
    _load(2000)


@pytest.mark.slow
def test_load_with_ten_percent_hostile_5000():
    _load(5000)


# --- tool-integrated traces (job kind `t`) -----------------------------------------------------

CELLS = HOSTILE / "cells"
# Benign traces whose outputs depend on state an attacker may try to change (each also routed to
# the "numpy" and "sympy" workers by a comment naming the module).
TRACE_PROBES = [
    (["a = 6", "print(a * 7)"], "42"),
    (["import math", "print(math.pi > 3.14, round(2.5))"], "True 2"),
    (["import decimal", "print(decimal.Decimal(1) / decimal.Decimal(3))"], "0.3333333333333333333333333333"),
    (["import random", "print(random.random() != 0.8444218515250481)"], "True"),  # not random.seed(0)'s first draw
    (["xs = [1, 2]", "xs.append(3)", "print(len(xs), sum(xs))"], "3 6"),
]
TRACE_PROBES += [([*cells[:-1], f"{cells[-1]}\n# {module}"], out) for module in ("numpy", "sympy") for cells, out in TRACE_PROBES]


def _trace(path: Path, ipc_key: int, host: tuple) -> tuple[list[str], set[Status]]:
    """A hostile trace: a file of tests/hostile/cells (cells split at `# %%`), or a program of the
    corpus run as the middle cell of a trace (its exceptions are outputs there, so OK may end it)."""
    text = _fill(path.read_text(encoding="utf-8"), ipc_key, host)
    expect = {Status(e) for e in text.splitlines()[0].removeprefix("# expect:").split()}
    if path.parent == CELLS:
        return [c.strip("\n") for c in re.split(r"^# %%$", text, flags=re.MULTILINE)], expect
    return ["x = 41", text, "print(x + 1)"], expect | {Status.OK}


@pytest.mark.parametrize("attack", sorted(CELLS.glob("*.py")) + ATTACKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_trace_cannot_reach_other_traces_or_the_host(executor, host_segments, attack):
    """One fork per trace: a hostile trace (its cells sharing one namespace) after traces holding a
    secret and before benign traces, in the same workers."""
    token = secrets.token_hex(8)
    secret_traces = [[f"secret_value = 'SECRET-{token}'", f"print(secret_value)\n# {module}"]
                     for module in ("plain", "numpy", "sympy")]
    cells, expect = _trace(attack, random.randrange(1 << 20, 1 << 30), host_segments)
    zygotes = {w.proc.pid for ws in executor._workers.values() for w in ws}
    start = time.monotonic()
    runs = executor.run_cells(secret_traces + [cells] + [c for c, _ in TRACE_PROBES])
    elapsed = time.monotonic() - start
    assert all(r.status is Status.OK and token in r.outputs[-1][0] for r in runs[:3]), runs[:3]
    attacker = runs[3]
    assert attacker.status in expect, attacker
    # The benign traces, after the attacker in the same workers, print what they should.
    assert [r.outputs[-1][0].strip() if r.status is Status.OK else r for r in runs[4:]] == [o for _, o in TRACE_PROBES]
    # Neither another trace's text or output nor the host's secret came out; the host is intact.
    assert token not in repr(runs[3:]) and host_segments[1].decode() not in repr(runs)
    assert ctypes.string_at(host_segments[2][1][1], 7) == b"keep me"
    assert not _sysv_left()
    # Bounded: every output within CELL_CHARS (plus the error line), a timeout one wall-clock limit.
    assert all(len(printed) <= CELL_CHARS + 301 and (shown is None or len(shown) <= CELL_CHARS)
               for r in runs for printed, shown in r.outputs)
    if attacker.status is Status.TIMEOUT:
        assert elapsed < 2 * TIMEOUT + 1.0, elapsed
    if attack.stem == "state_other_trace":
        assert attacker.outputs[0][0] == "NameError: name 'secret_value' is not defined"
    if attack.stem == "flood_cells":
        assert [len(p) for p, _ in attacker.outputs[:2]] == [CELL_CHARS - 1] * 2 and attacker.outputs[3][0].endswith("tail\n")
    # No process outlives its trace (a fork of a cell would run with the worker's uid).
    if uids := _sandbox_uids(executor):
        assert _pids_of(uids) <= {w.proc.pid for ws in executor._workers.values() for w in ws} | zygotes


@pytest.mark.parametrize("data, ok", [
    (b'["cells", "ok", "", [["42\\n", null], ["", "7"]]]', True),
    (b'["cells", "forbidden", "open", []]', True),
    (b'["cells", "timeout", "", []]', False),  # only the zygote decides a timeout
    (b'["cells", "runtime", "", []]', False),  # ... and how a child died
    (b'["ok", 7, "", null]', False),  # a program's record for a trace
    (b'["cells", "ok", "", [["42", null]]]["cells", "ok", "", []]', False),  # two records
    (b'["cells", "ok", "", [["42", null, null]]]', False),
    (b'["cells", "ok", "", [[42, null]]]', False),
    (b'["cells", "ok", "", [["42", 7]]]', False),
    (b'["cells", "ok", "", [["' + b"x" * 2400 + b'", null]]]', False),  # longer than a cell's output
    (b'["cells", "ok", "", [["", "' + b"x" * 2001 + b'"]]]', False),
    (b'["cells", "ok", "' + b"d" * 301 + b'", []]', False),
    (b'["cells", "ok", "", [' + b",".join([b'["", null]'] * 33) + b"]]", False),  # more than MAX_CELLS
    (b'["cells", "ok", "", {"0": ["", null]}]', False),
    (b'["cells", "ok", "", [["", NaN]]]', False),
    (b"[" * 100_000, False),
    (b'["cells", "ok", "", [["\xff", null]]]', False),  # not ASCII JSON
])
def test_trace_records_are_parsed_strictly(data, ok):
    parsed = parse_cells(data)
    if ok:
        assert isinstance(parsed, Cells), parsed
    else:
        assert isinstance(parsed, Outcome) and parsed.status is Status.RUNTIME and "malformed" in parsed.detail, parsed


def test_trace_jobs_are_lists_of_sources(executor):
    bad = executor.run_many(['{"cells": ["x = 1"]}', "not json", "[1, 2]", '["x = 1", null]'], kind="tir")
    assert all(isinstance(c, Cells) and c.status is Status.SYNTAX and not c.outputs for c in bad), bad
    assert executor.run_cells([["print(1)"] * (MAX_CELLS + 5)])[0].outputs == (("1\n", None),) * MAX_CELLS
