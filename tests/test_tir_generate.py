"""`distill generate --thoughts tir`: teacher rounds with the trace's code run in the sandbox in
between, against the fixture OpenAI-compatible server over real HTTP (which honours `stop` and
continues a trailing assistant message)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import TeacherServer  # noqa: E402
from test_generate import cli_generate, kill_9_when, read, write_data  # noqa: E402

from distill.generate import Settings, generate  # noqa: E402
from distill.journal import journal_path  # noqa: E402
from distill.records import InputError, Record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAKE = "999"  # what the scripted traces claim their cells print: the client must show the real output instead


def three_rounds(i: int, a: int, b: int, sample: int = 0) -> str:
    """A trace of three rounds: a cell, a cell using the first one's variables, then the answer, which
    states the output the client appended (`{output}`). Markers name the item, sample and round."""
    return (f"I add up the apples. [q{i} s{sample} r1]\n```python\napples = {a}\nbought = {b}\nprint(apples + bought)\n```\n"
            f"```output\n{FAKE}\n```\n"
            f"I check it once more. [q{i} r2]\n```python\ntotal = apples + bought\nprint(total)\n```\n"
            f"```output\n{FAKE}\n```\n"
            f"[q{i} r3] She has {{output}} apples. The answer is \\boxed{{{{output}}}}.")


def failing(i: int, a: int, b: int) -> str:
    """A trace whose second cell raises: its output is the error line, and the answer made up."""
    return (f"I add up the apples. [q{i} s1 r1]\n```python\napples = {a}\nprint(apples + {b})\n```\n"
            f"```output\n{FAKE}\n```\n"
            f"Now per basket. [q{i} r2]\n```python\nprint(apples / 0)\n```\n```output\n{FAKE}\n```\n"
            f"[q{i} r3] The code failed with {{output}}, so I guess. The answer is \\boxed{{{a}}}.")


def workload(n: int, traces=lambda i, a, b: [three_rounds(i, a, b)]) -> tuple[list[Record], dict]:
    items, script = [], {}
    for i in range(n):
        a, b = 3 + i, 2 + i % 5
        q = f"Ann has {a} apples and buys {b} more. How many apples does she have? (#{i})"
        items.append(Record(id=f"t/{i}", question=q, answer=a + b, source="t"))
        script[q] = {"tir": traces(i, a, b)}
    return items, script


def test_the_script_is_what_the_tests_think():
    text = three_rounds(4, 7, 1)
    assert text.count("```output") == 2 and text.endswith("She has {output} apples. The answer is \\boxed{{output}}.")


def run(items, out, server, **settings) -> object:
    return generate(items, "tir", "openai:teacher-x", out, teacher_options={"base_url": server.url},
                    settings=Settings(**settings), concurrency=4, workers=1)


def test_rounds_run_the_cells_and_feed_the_real_outputs_back(tmp_path):
    items, script = workload(5, lambda i, a, b: [three_rounds(i, a, b), failing(i, a, b)])
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        result = run(items, out, server, samples=2)
        # Round 1 asks both samples at once; each then goes on alone: 1 + 2 + 2 requests per item.
        assert server.requests == 5 * 5
        assert all(server.rounds[item.question, k] == (1 if k == 0 else 2) for item in items for k in (0, 1, 2))
        assert not any(FAKE in p for p in server.prefixes)
    rows = read(out)
    assert len(rows) == 10
    for row in rows:
        item = items[int(row["id"].split("/")[1])]
        turns, total = row["meta"]["turns"], item.answer
        assert row["meta"]["rounds"] == 3 and len(turns) == 3 and turns[2]["code"] is None
        assert FAKE not in row["meta"]["raw"] and row["rationale"] in row["meta"]["raw"]
        if row["sample"] == 0:
            assert row["status"] == "ok" and row["correct"] and row["prediction"] == total
            assert [t["output"] for t in turns[:2]] == [str(total), str(total)]  # state carried: `apples` in cell 2
            assert f"She has {total} apples" in row["rationale"]
        else:
            assert row["status"] == "ok" and row["correct"] is False
            assert turns[1]["output"].splitlines()[-1].startswith("ZeroDivisionError")
            assert "The code failed with ZeroDivisionError" in turns[2]["text"]
    # The ledger counts every round, and the records' usage adds up to it.
    assert result.ledger.run.requests == 25 and result.stats.called == 25
    assert result.ledger.run.prompt_tokens == server.tokens["prompt_tokens"] > 0
    assert result.ledger.run.completion_tokens == server.tokens["completion_tokens"] > 0
    assert sum(r["meta"]["usage"]["prompt_tokens"] for r in rows) == server.tokens["prompt_tokens"]
    assert sum(r["meta"]["usage"]["completion_tokens"] for r in rows) == server.tokens["completion_tokens"]
    assert result.stats.correct["tir"] == 5


def test_a_rerun_replays_every_round_and_a_new_max_rounds_reuses_them(tmp_path):
    items, script = workload(3)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        run(items, out, server, max_rounds=2)
        assert server.requests == 6
        rows = read(out)
        # Stopped after its second cell: the trace is checked as it is (no answer yet; the CoT reading
        # takes the last number of the text, here a marker's).
        assert all(r["meta"]["rounds"] == 2 and r["correct"] is False for r in rows)
        assert all(r["meta"]["raw"].rstrip().endswith("print(total)\n```") for r in rows)
        again = run(items, out, server, max_rounds=2)
        assert server.requests == 6 and again.stats.called == 0 and again.stats.resumed == 3
        more = run(items, out, server, max_rounds=3)  # rounds 1-2 from the journal, round 3 asked now
        assert server.requests == 9 and more.stats.called == 3 and more.ledger.total.requests == 9
    rows = [r for r in read(out) if r["meta"]["rounds"] == 3]
    assert len(rows) == 3 and all(r["correct"] for r in rows)


def test_a_teacher_that_writes_its_own_outputs_ends_in_one_round_and_made_up_ones_are_rejected(tmp_path):
    def own(i, a, b):  # sample 0 makes its outputs up; sample 1 writes the true ones
        honest = three_rounds(i, a, b).replace(FAKE, str(a + b)).replace("{output}", str(a + b))
        return [three_rounds(i, a, b).replace("{output}", FAKE), honest]

    items, script = workload(4, own)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script, honours_stop=False) as server:
        run(items, out, server, samples=2)
        assert server.requests == 4
    rows = read(out)
    assert all(r["meta"]["rounds"] == 1 for r in rows)
    assert sorted((r["sample"], r["status"], r["correct"]) for r in rows) == \
        [(0, "output-mismatch", False)] * 4 + [(1, "ok", True)] * 4


def test_code_the_sandbox_refuses_ends_the_trace_and_the_check_says_why(tmp_path):
    hostile = {"timeout": "while True:\n    pass", "forbidden": "print(open('/etc/passwd').read())"}

    def refused(i, a, b):
        code = list(hostile.values())[i % 2]
        return [f"Let me look. [q{i} s0 r1]\n```python\n{code}\n```\n```output\n{FAKE}\n```\nSo {{output}}. The answer is 1."]

    items, script = workload(2, refused)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        generate(items, "tir", "openai:m", out, teacher_options={"base_url": server.url}, timeout=0.3, workers=1)
        assert server.requests == 2  # no second round: nothing to feed back
    rows = sorted(read(out), key=lambda r: r["id"])
    assert [(r["status"], r["meta"]["rounds"]) for r in rows] == [("timeout", 1), ("forbidden", 1)]


def test_the_fleet_and_vllms_continue_final_message(tmp_path):
    items, script = workload(6)
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as one, TeacherServer(script) as two:
        generate(items, "tir", "openai:m", out, teacher_options={"base_url": f"{one.url},{two.url}", "concurrency": 4,
                                                                 "continue_final_message": True},
                 concurrency=4, workers=1)
        assert one.requests + two.requests == 18 and one.requests and two.requests
        assert one.continued + two.continued == 12  # rounds 2 and 3 continue a prefix
    assert all(r["correct"] for r in read(out))


def test_tir_refuses_logprobs_and_zero_rounds(tmp_path):
    items, _ = workload(1)
    for settings, flag in ((Settings(logprobs=2), "--logprobs"), (Settings(max_rounds=0), "--max-rounds")):
        with pytest.raises(InputError, match=flag):
            generate(items, "tir", "openai:m", tmp_path / "o.jsonl", teacher_options={"base_url": "http://127.0.0.1:9/v1"},
                     settings=settings)


def test_kill_9_mid_trace_then_resume_pays_no_round_twice(tmp_path):
    items, script = workload(30)
    data = write_data(tmp_path / "data.jsonl", items)
    out = tmp_path / "out.jsonl"
    cmd = cli_generate(data, out, "--thoughts", "tir", "--max-rounds", "4")
    journal = journal_path(out)

    def answered() -> dict[str, tuple[str, str]]:
        """Journaled round key -> its marker (item, round)."""
        lines = [json.loads(line) for line in journal.read_text().splitlines() if line.endswith("}")] \
            if journal.exists() else []
        return {e["key"]: re.findall(r"\[(q\d+) .*?(r\d)\]", e["completions"][0]["text"])[0]
                for e in lines if "completions" in e}

    def half_done(got: dict[str, tuple[str, str]]) -> bool:
        return bool({q for q, r in got.values() if r == "r1"} - {q for q, r in got.values() if r == "r3"})

    with TeacherServer(script, latency=0.1) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test"}
        kill_9_when(cmd, env, lambda: len(got := answered()) >= 30 and half_done(got))
        before = answered()
        assert 0 < len(before) < 90 and half_done(before)  # killed mid-run, mid-trace
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        after = answered()
    rows = read(out)
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in items)
    assert all(r["status"] == "ok" and r["correct"] and r["meta"]["rounds"] == 3 for r in rows)
    # Every round was journaled once; the rerun asked again only what the killed run had in flight.
    assert len(after) == 90 and sorted(after.values()) == sorted((f"q{i}", f"r{k}") for i in range(30) for k in (1, 2, 3))
    assert server.requests - 90 <= 4 and sum(server.rounds.values()) == server.requests
    assert all(count == 1 for (question, k), count in server.rounds.items()
               if (f"q{question.split('#')[1][:-1]}", f"r{k + 1}") in before.values())
    ledger = json.loads(out.with_suffix(".ledger.json").read_text())
    assert ledger["total"]["requests"] == 90

