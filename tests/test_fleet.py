"""`--base-url URL1,URL2,...`: one teacher over several fixture servers, one of them killed mid-run."""
from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import TeacherServer  # noqa: E402
from test_generate import read, workload  # noqa: E402

from distill.cli import main  # noqa: E402
from distill.generate import Result, agenerate  # noqa: E402
from distill.journal import journal_path  # noqa: E402
from distill.teachers import Request, TeacherError, make_teacher  # noqa: E402
from distill.teachers.fleet import parse_base_urls  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def one_answer(script: dict) -> dict:
    """Only the right rationale per thought: every server answers a question the same way."""
    return {q: {t: answers[:1] for t, answers in by_thought.items()} for q, by_thought in script.items()}


def run(items: list, teacher, out: Path, concurrency: int) -> Result:
    """`distill generate` (cot) with a teacher built here, closed in the run's own event loop."""
    async def go() -> Result:
        try:
            return await agenerate(items, ["cot"], teacher, out, concurrency=concurrency, workers=1)
        finally:
            await teacher.aclose()
    return asyncio.run(go())


def journal_keys(out: Path) -> tuple[Counter, Counter]:
    answered, written = Counter(), Counter()
    for line in journal_path(out).read_text().splitlines():
        entry = json.loads(line)
        (answered if "completions" in entry else written)[entry["key"]] += 1
    return answered, written


class ServerProcess:
    """The fixture server in a process of its own, so that it can be killed with SIGKILL."""

    def __init__(self, script: dict, tmp: Path, latency: float):
        (tmp / "script.json").write_text(json.dumps(script))
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests/teacher_server.py"), "--script",
                                      str(tmp / "script.json"), "--latency", str(latency)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.kill()
            raise RuntimeError(f"fixture server did not start: {line!r}")
        self.url = line.split()[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def test_parse_base_urls(tmp_path):
    assert parse_base_urls("http://a:1/v1") == ["http://a:1/v1"]
    assert parse_base_urls("http://a:1/v1, https://b/v1") == ["http://a:1/v1", "https://b/v1"]
    urls = tmp_path / "urls.txt"
    urls.write_text("# vLLM servers\nhttp://a:1/v1\n\nhttp://b:2/v1  # node 2\n")
    assert parse_base_urls(f"@{urls}") == ["http://a:1/v1", "http://b:2/v1"]
    urls.write_text("http://a:1/v1\nb:2/v1\n")
    with pytest.raises(TeacherError, match=r"urls.txt:2: 'b:2/v1' is not an http\(s\) URL"):
        parse_base_urls(f"@{urls}")
    with pytest.raises(TeacherError, match="listed twice"):
        parse_base_urls("http://a/v1,http://a/v1")
    with pytest.raises(TeacherError, match="cannot read"):
        parse_base_urls(f"@{tmp_path / 'missing.txt'}")
    urls.write_text("# nothing\n")
    with pytest.raises(TeacherError, match="lists no URL"):
        parse_base_urls(f"@{urls}")


def test_requests_spread_by_free_slots_and_each_server_keeps_its_share(tmp_path):
    items, script = workload(48)
    script = one_answer(script)
    servers = [TeacherServer(script, latency=0.04).start() for _ in range(3)]
    try:
        base_url = ",".join(s.url for s in servers)
        teacher = make_teacher("openai:m", base_url=base_url, concurrency=6)
        result = run(items, teacher, tmp_path / "out.jsonl", 6)
    finally:
        for s in servers:
            s.stop()
    assert result.stats.correct["cot"] == 48
    assert [s.peak_in_flight for s in servers] == [2, 2, 2]  # 6 in flight, shared out: 2 each, never more
    assert sum(s.requests for s in servers) == 48 and min(s.requests for s in servers) >= 10
    assert [f.answered for f in teacher.fleet.servers] == [s.requests for s in servers]  # counted per server


def test_a_server_killed_mid_run_loses_nothing_and_nothing_is_paid_twice(tmp_path):
    items, script = workload(90)
    script = one_answer(script)
    out = tmp_path / "out.jsonl"
    doomed = ServerProcess(script, tmp_path, latency=0.05)
    survivors = [TeacherServer(script, latency=0.05).start() for _ in range(2)]
    try:
        teacher = make_teacher("openai:m", base_url=",".join([survivors[0].url, doomed.url, survivors[1].url]),
                               concurrency=6, timeout=10)
        killed = teacher.fleet.servers[1]

        def kill_after_some_answers() -> None:
            deadline = time.monotonic() + 60
            while killed.answered < 8 and time.monotonic() < deadline:
                time.sleep(0.002)
            doomed.kill()

        killer = threading.Thread(target=kill_after_some_answers)
        killer.start()
        result = run(items, teacher, out, 6)
        killer.join(60)
    finally:
        doomed.kill()
        for s in survivors:
            s.stop()
    # Every question answered, once.
    assert result.stats.correct["cot"] == 90 and len(read(out)) == 90
    answered, written = journal_keys(out)
    assert len(answered) == 90 and set(answered.values()) == {1} and set(written.values()) == {1}
    # The killed server answered some, then its in-flight requests failed and went to the others.
    assert 8 <= killed.answered < 60 and killed.failed["connection"] >= 1 and not killed.healthy
    assert killed.sent > killed.answered
    # Nothing delivered was asked again: the survivors answered each of the rest exactly once.
    assert all(count == 1 for s in survivors for count in s.answered.values())
    assert sum(s.requests for s in survivors) + killed.answered == 90
    assert [f.answered for f in (teacher.fleet.servers[0], teacher.fleet.servers[2])] == [s.requests for s in survivors]
    assert max(s.peak_in_flight for s in survivors) <= 2  # the survivors kept their share of --concurrency


def test_a_dead_server_is_probed_and_taken_back_when_it_answers(tmp_path):
    items, script = workload(80)
    script = one_answer(script)
    live = TeacherServer(script, latency=0.03).start()
    gone = TeacherServer(script).start()
    port = gone.port
    gone.stop()  # dead from the start: connections refused
    back = TeacherServer(script, latency=0.03, port=port)
    try:
        teacher = make_teacher("openai:m", base_url=f"{live.url},{gone.url}", concurrency=4)
        teacher.fleet.probe_base, teacher.fleet.probe_cap = 0.05, 0.2
        dead = teacher.fleet.servers[1]

        def restart() -> None:
            deadline = time.monotonic() + 60
            while live.requests < 15 and time.monotonic() < deadline:
                time.sleep(0.005)
            back.start()

        thread = threading.Thread(target=restart)
        thread.start()
        result = run(items, teacher, tmp_path / "out.jsonl", 4)
        thread.join(60)
    finally:
        live.stop()
        back.stop()
    assert result.stats.correct["cot"] == 80
    assert dead.failed["connection"] >= 1 and dead.healthy  # refused at first, healthy again after a probe
    assert back.requests >= 5 and back.requests == dead.answered
    assert live.requests + back.requests == 80


def test_when_every_server_is_down_requests_fail_after_their_retries():
    dead = [TeacherServer().start() for _ in range(2)]
    for s in dead:
        s.stop()
    teacher = make_teacher("openai:m", base_url=",".join(s.url for s in dead), concurrency=2, max_retries=2)

    async def go():
        try:
            return await teacher.complete(Request([{"role": "user", "content": "Question: q\n"}]))
        finally:
            await teacher.aclose()

    got = asyncio.run(go())
    assert got[0].error == "connection"
    # One free move to the other server while it still looked up, then 1 + 2 retries.
    assert sum(s.sent for s in teacher.fleet.servers) == 4


def test_cli_generate_and_synth_take_a_file_of_urls(tmp_path):
    items, script = workload(12)
    script = one_answer(script)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": r.id, "question": r.question, "answer": r.answer}) + "\n" for r in items))
    seeds = [f"Seed {i}: Tom has {i} apples and buys 2 more. How many?" for i in range(4)]
    new = [f"Lena reads {i + 3} pages a day for 2 days. How many pages does she read?" for i in range(4)]
    for i, (seed, q) in enumerate(zip(seeds, new)):
        script[seed] = {"cot": [f"New question: {q}\nSolution: ...\nCheck: fine.\nFinal question: {q}"]}
        script[q] = {"pot": [f"ans = {i + 3} * 2"], "eot": [f"pages = {i + 3} * 2\nans = pages"]}
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps({"id": i, "question": q, "answer": i + 2}) + "\n"
                                                  for i, q in enumerate(seeds)))
    servers = [TeacherServer(script, latency=0.02).start() for _ in range(2)]
    try:
        urls = tmp_path / "servers.txt"
        urls.write_text("".join(s.url + "\n" for s in servers))
        res = CliRunner().invoke(main, ["generate", "--thought", "cot", "--data", str(data), "--teacher", "openai:m",
                                        "--base-url", f"@{urls}", "--concurrency", "4", "-o", str(tmp_path / "g.jsonl"),
                                        "--no-progress", "--workers", "1"])
        assert res.exit_code == 0, res.output
        assert sum(s.requests for s in servers) == 12 and min(s.requests for s in servers) >= 3
        assert max(s.peak_in_flight for s in servers) <= 2  # --concurrency 4 over 2 servers
        before = [s.requests for s in servers]
        res = CliRunner().invoke(main, ["synth", "--seed-data", str(tmp_path / "seeds.jsonl"), "--n", "4",
                                        "--teacher", "openai:m", "--base-url", f"@{urls}", "--samples", "1",
                                        "--decontaminate", "none", "-o", str(tmp_path / "s.jsonl"), "--no-progress",
                                        "--workers", "1", "--concurrency", "2"])
        assert res.exit_code == 0, res.output
        assert sum(s.requests for s in servers) == 12 + 4 + 4 * 2  # 4 questions written, each solved by pot and eot
        assert all(s.requests > b for s, b in zip(servers, before))  # synth used both servers too
        assert max(s.peak_in_flight for s in servers) <= 2
        bad = tmp_path / "bad.txt"
        bad.write_text(f"{servers[0].url}\nlocalhost:9/v1\n")
        res = CliRunner().invoke(main, ["generate", "--thought", "cot", "--data", str(data), "--teacher", "openai:m",
                                        "--base-url", f"@{bad}", "-o", str(tmp_path / "bad.jsonl"), "--no-progress"])
        assert res.exit_code == 2 and "bad.txt:2" in res.output
    finally:
        for s in servers:
            s.stop()
    assert len(read(tmp_path / "s.jsonl")) == 4


def test_the_progress_table_shows_each_server(tmp_path):
    from rich.console import Console

    from distill.generate import Run, Settings, stats_table
    from distill.journal import Journal
    from distill.ledger import Ledger
    from distill.teachers.prompts import load_prompts

    items, script = workload(4)
    servers = [TeacherServer(one_answer(script)).start() for _ in range(2)]
    try:
        teacher = make_teacher("openai:m", base_url=",".join(s.url for s in servers), concurrency=2)
        out = tmp_path / "out.jsonl"
        run(items, teacher, out, 2)
    finally:
        for s in servers:
            s.stop()
    table = stats_table(Run(items, ["cot"], teacher, out, load_prompts(["cot"]), Settings(),
                            Ledger.start(teacher.name, None), Journal(out)))
    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(table)
    text = console.export_text()
    assert "servers" in text
    # Each server's row, its counts what it was sent (the split between them follows their timing).
    counts = [re.search(re.escape(s.url) + r": (\d+) sent, (\d+) answered", text) for s in servers]
    assert all(counts) and sum(int(m.group(1)) for m in counts) == 4
    assert all(m.group(1) == m.group(2) for m in counts)
    assert make_teacher("openai:m", base_url=servers[0].url).status() is None  # one server: no row
