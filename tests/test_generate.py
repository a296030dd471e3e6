"""`distill generate` end to end against the fixture OpenAI-compatible server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import Faults, TeacherServer  # noqa: E402

from distill.cli import main  # noqa: E402
from distill.generate import Settings, generate  # noqa: E402
from distill.journal import journal_path  # noqa: E402
from distill.records import Record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def right_and_wrong(a: int, b: int) -> dict[str, list[str]]:
    """Per thought: a correct rationale, then a wrong one (the server cycles through them)."""
    return {
        "cot": [f"She has {a} + {b} = {a + b} apples.\nThe answer is {a + b}.", f"She has {a} apples.\nThe answer is {a}."],
        "pot": [f"```python\napples = {a}\nbought = {b}\nans = apples + bought\n```", f"ans = {a} - {b}"],
        "eot": [f"% Assume x apples:\ntotal = x\n% She buys {b} more:\n{a} + {b} = total\nans = total",
                f"% Assume x apples:\ntotal = x\n{a} = total\nans = total"],
    }


def workload(n: int) -> tuple[list[Record], dict]:
    items, script = [], {}
    for i in range(n):
        a, b = 3 + i, 2 + i % 5
        q = f"Ann has {a} apples and buys {b} more. How many apples does she have? (#{i})"
        items.append(Record(id=f"t/{i}", question=q, answer=a + b, source="t"))
        script[q] = right_and_wrong(a, b)
    return items, script


def write_data(path: Path, items: list[Record]) -> Path:
    path.write_text("".join(json.dumps({"id": r.id, "question": r.question, "answer": r.answer}) + "\n" for r in items))
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def slots(rows: list[dict]) -> Counter:
    return Counter((r["id"], r["thought"], r["sample"]) for r in rows)


@pytest.mark.parametrize("thought", ["cot", "pot", "eot"])
def test_generate_end_to_end(tmp_path, thought):
    items, script = workload(6)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        result = generate(items, thought, "openai:teacher-x", out, teacher_options={"base_url": server.url},
                          settings=Settings(samples=2), concurrency=4, workers=1)
        assert server.requests == 6
    rows = read(out)
    assert len(rows) == 12 and set(slots(rows).values()) == {1}
    for row in rows:
        record = Record.from_dict(row)
        assert record.thought == thought and record.model == "openai:teacher-x" and record.status == "ok"
        assert record.correct == (record.sample == 0)  # the script's first answer is right, the second wrong
        assert record.meta["raw"] and record.prompt_hash and record.request and record.meta["usage"]["completion_tokens"] > 0
        assert "```" not in record.rationale
    assert result.stats.correct[thought] == 6 and result.ledger.run.requests == 6
    ledger = json.loads(out.with_suffix(".ledger.json").read_text())
    assert ledger["total"]["prompt_tokens"] > 0


def test_rerun_sends_nothing_and_a_new_prompt_is_a_new_request(tmp_path):
    items, script = workload(4)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        run = lambda **kw: generate(items, "cot", "openai:m", out, teacher_options={"base_url": server.url}, **kw)  # noqa: E731
        run()
        before = out.read_text()
        again = run()
        assert server.requests == 4 and again.stats.called == 0 and again.stats.resumed == 4
        assert out.read_text() == before
        assert again.ledger.total.prompt_tokens > 0 and again.ledger.run.prompt_tokens == 0
        mine = tmp_path / "cot.yaml"
        mine.write_text((ROOT / "prompts/cot.yaml").read_text().replace("careful", "thorough"))
        run(prompt_files=[mine])
        assert server.requests == 8 and len(read(out)) == 8


def test_keep_correct_and_stop_once_correct(tmp_path):
    items, script = workload(3)
    script[items[0].question]["cot"] = script[items[0].question]["cot"][::-1]  # wrong first for item 0
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        settings = Settings(samples=4, until_correct=1, keep="correct")
        result = generate(items, "cot", "openai:m", out, teacher_options={"base_url": server.url}, settings=settings)
        assert server.requests == 4  # item 0 needed two rounds, the others one
    rows = read(out)
    assert all(r["correct"] for r in rows) and sorted((r["id"], r["sample"]) for r in rows) == [("t/0", 1), ("t/1", 0), ("t/2", 0)]
    assert result.stats.done == result.stats.requests == 12


def test_faults_at_20_percent_still_give_complete_output(tmp_path):
    items, script = workload(30)
    faults = Faults(rates={"429": 0.05, "500": 0.05, "drop": 0.04, "slow": 0.03, "malformed": 0.015, "truncated": 0.015},
                    slow_s=0.6, seed=7)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script, faults=faults) as server:
        options = {"base_url": server.url, "timeout": 0.3, "max_retries": 10}
        result = generate(items, "cot", "openai:m", out, teacher_options=options, settings=Settings(samples=2), concurrency=8)
        assert sum(server.injected.values()) >= 5
    rows = read(out)
    assert slots(rows) == Counter({(r.id, "cot", s): 1 for r in items for s in (0, 1)})
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= {"ok", "malformed", "truncated"}  # answered; transient faults were retried away
    assert statuses["ok"] >= 40 and sum(result.retries.values()) >= 5


def cli_generate(data: Path, out: Path, *options: str) -> list[str]:
    """`distill generate` of `data` into `out` by `openai:m`, 4 requests in flight, one PoT worker."""
    return [sys.executable, "-m", "distill", "generate", "--data", str(data), "--teacher", "openai:m", "--concurrency", "4",
            "-o", str(out), "--no-progress", "--workers", "1", *options]


def kill_9_when(cmd: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
    """Run `cmd` and kill -9 it as soon as `ready()` (polled), or after a minute."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ready():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_mid_run_then_resume(tmp_path):
    items, script = workload(40)
    data = write_data(tmp_path / "data.jsonl", items)
    out = tmp_path / "out.jsonl"
    cmd = cli_generate(data, out, "--thought", "cot,eot", "--samples", "2")
    journal = journal_path(out)
    with TeacherServer(script, latency=0.05) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test"}
        kill_9_when(cmd, env, lambda: journal.exists() and journal.read_text().count("\n") >= 30)
        answered_before = {json.loads(line)["key"] for line in journal.read_text().splitlines()
                           if line.endswith("}") and '"completions"' in line}
        assert 0 < len(answered_before) < 80  # killed mid-run
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    rows = read(out)
    assert slots(rows) == Counter({(r.id, t, s): 1 for r in items for t in ("cot", "eot") for s in (0, 1)})
    assert all(r["status"] == "ok" for r in rows)
    # One request per question x thought (n=2). A request the killed run had in flight may have
    # been sent again (its answer died with the process), but never one whose answer was journaled.
    assert len(server.asked) == 80
    repeated = {qt for qt, count in server.asked.items() if count > 1}
    journaled = {(r["question"], r["thought"]) for r in rows if r["request"] in answered_before}
    assert len(journaled) == len(answered_before) and not repeated & journaled
    assert server.requests == 80 + len(repeated) and len(repeated) <= 4  # at most --concurrency in flight


def test_cli_refuses_a_foreign_output_and_overwrites_when_asked(tmp_path):
    items, script = workload(2)
    data = write_data(tmp_path / "data.jsonl", items)
    out = tmp_path / "out.jsonl"
    out.write_text("{}\n")
    with TeacherServer(script) as server:
        args = ["generate", "--thought", "cot", "--data", str(data), "--teacher", "openai:m", "--base-url", server.url,
                "-o", str(out), "--no-progress"]
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code == 2 and "--overwrite" in refused.output
        assert CliRunner().invoke(main, args + ["--overwrite"]).exit_code == 0
        assert len(read(out)) == 2
        bad = CliRunner().invoke(main, args + ["--device", "cpu"])
        assert bad.exit_code == 2 and "--device" in bad.output


def test_a_failing_validator_stops_the_requests(tmp_path):
    """An error while checking ends the run with that error, without asking the teacher for the rest.
    In a subprocess: the fixture server's thread logs the dropped connections while the main thread
    unwinds, and concurrent imports under pytest's assertion rewriting trip a CPython 3.11 AST bug."""
    script = tmp_path / "broken.py"
    script.write_text(f"""
import sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
from pathlib import Path
import distill.generate as gen
from test_generate import TeacherServer, workload

class Broken(gen.Checker):
    def check(self, rationales):
        raise RuntimeError("checker broke")

gen.Checker = Broken
items, script = workload(300)
with TeacherServer(script) as server:
    try:
        gen.generate(items, "cot", "openai:teacher-x", Path({str(tmp_path / "out.jsonl")!r}),
                     teacher_options={{"base_url": server.url}}, settings=gen.Settings(samples=1), concurrency=4, workers=1)
    except RuntimeError as exc:
        print("raised:", exc, "requests:", server.requests)
""")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    message = res.stdout.split("raised: ")[-1].split()
    assert message[:2] == ["checker", "broke"] and 0 < int(message[-1]) < 300, res.stdout
    assert "never retrieved" not in res.stderr


def test_a_run_that_fails_early_leaves_no_sandbox_behind(tmp_path):
    """The PoT pool opens in a thread while the first requests fly; when the run fails before it is
    up (here: a bad API key), the pool that opens afterwards is closed at once."""
    from distill.records import InputError
    from distill.teachers import TeacherError

    class Refusing:
        name = "fake:refusing"

        async def complete(self, request):
            raise TeacherError("bad key")

    def sandboxes() -> int:
        out = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "args="], capture_output=True, text=True).stdout
        return out.count("solvers.sandbox.worker")

    before = sandboxes()
    items, _ = workload(5)
    with pytest.raises(InputError, match="bad key"):
        generate(items, ["pot"], Refusing(), tmp_path / "out.jsonl", settings=Settings(samples=1), concurrency=2, workers=2)
    time.sleep(1.5)  # the opening thread finishes (pool start-up) and must close what it opened
    assert sandboxes() <= before
