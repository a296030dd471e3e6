"""`distill synth`: parsing, voting, dedupe, and runs on the simulated world and the test server."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import TeacherServer  # noqa: E402

from distill.cli import main  # noqa: E402
from distill.data import load  # noqa: E402
from distill.records import read_records  # noqa: E402
from distill.synth import NearDuplicates, SynthSettings, Tally, parse_question, paths, synth  # noqa: E402
from distill.teachers.base import Completion, Request  # noqa: E402
from distill.world.synth import WorldSynthTeacher  # noqa: E402

WORLD_SEEDS = "world:train?n=60"


@pytest.mark.parametrize("raw, question, reason", [
    ("New question: A? \nSolution: 2.\nCheck: fine.\nFinal question: Ann has 3 red pens and 4 blue pens. How many pens?",
     "Ann has 3 red pens and 4 blue pens. How many pens?", None),
    ("New question: Bob has 3.\nCheck: no question; I add one.\n**Final question:** Bob has 3 cats and 2 dogs. "
     "How many pets does Bob have?\nAnswer: 5", "Bob has 3 cats and 2 dogs. How many pets does Bob have?", None),
    ("New question: Ann has 3 pens and 4 more. How many pens does she have?\nSolution: 7", None, "no final question"),
    ("New question: x.\nFinal question:  \n", None, "empty"),
    ("Final question: Ann has 3 red pens and 4 blue pens and she buys", None, "truncated"),
])
def test_parse_question(raw: str, question: str | None, reason: str | None) -> None:
    assert parse_question(raw) == (question, reason)


def test_votes_need_the_agreement_of_all_votes_asked_for() -> None:
    assert Tally({"pot": [5, 5.000000000001], "eot": [5, 7]}).decide(4, 0.75) == (5, 0.75)
    assert Tally({"pot": [5, None], "eot": [5, 7]}).decide(4, 0.75) == (None, 0.5)  # a failure votes for nothing
    assert Tally({"pot": [5, 5], "eot": [7, 7]}).decide(4, 0.5) == (None, 0.5)  # a tie is never accepted
    assert Tally({"pot": [3], "eot": [3]}).decide(2, 0.75) == (3, 1.0)  # PoT and EoT agree
    assert Tally({}).decide(2, 0.75) == (None, 0.0)


def test_near_duplicates_keep_numbers() -> None:
    near = NearDuplicates()
    near.add("seed", "Maria buys 3 packs of pens. Each pack costs $4. How much does she spend?")
    assert near.find("Maria  buys 3 packs of pens.  Each pack costs $4.0. How much does she spend?") == "seed"
    assert near.find("Maria buys 7 packs of pens. Each pack costs $9. How much does she spend?") is None


class Counting(WorldSynthTeacher):
    """The world teacher, counting the requests it answers."""

    calls = 0

    async def complete(self, request: Request) -> list[Completion]:
        type(self).calls += 1
        return await super().complete(request)


def test_world_precision_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    teacher = Counting.from_spec("error_rate=0.2")
    settings = SynthSettings(n=120, decontaminate=())
    result = synth(WORLD_SEEDS, teacher, out, settings=settings, workers=1)
    r = result.report
    print(f"\nworld synth (error_rate=0.2, 4 votes, agreement 0.75): accepted {r['accepted']}/{r['candidates']}, "
          f"precision {r['precision']:.1%} (single sample {r['precision_first_sample']:.1%}), rejected {r['rejected']}")
    assert r["precision"] >= 0.95 and r["precision"] > r["precision_first_sample"]
    assert 0.6 < r["acceptance_of_solved"] < 0.95  # about P(>= 3 of 4 right) = 0.82 at error_rate 0.2
    assert {"copy of a seed", "empty", "truncated", "no agreement"} <= set(r["rejected"])

    accepted = read_records(out)
    assert len(accepted) == r["accepted"] and all(rec.answer is not None for rec in accepted)
    rec = accepted[0]
    assert rec.id.startswith("synth/world:train/") and rec.source == f"synth:{WORLD_SEEDS}"
    assert rec.meta["accepted"] is True and rec.meta["agreement"] >= 0.75 and set(rec.meta["votes"]) == {"pot", "eot"}
    assert rec.meta["seed_id"] and "Final question:" in rec.meta["raw"] and rec.meta["usage"]["completion_tokens"] > 0
    rejected = read_records(paths(out)["rejected"])
    assert len(rejected) + len(accepted) == 120 and all(x.answer is None and x.meta["reason"] for x in rejected)
    assert load(str(out)).records[0].answer == rec.answer  # a data set for `distill generate --data`
    ledger = json.loads(paths(out)["ledger"].read_text())
    assert ledger["run"]["requests"] == 120 + r["solved"] * 2 and ledger["run"]["cost_usd"] == 0

    calls, before = Counting.calls, out.read_text()
    again = synth(WORLD_SEEDS, teacher, out, settings=settings, workers=1)
    assert Counting.calls == calls and out.read_text() == before  # everything from the journals
    assert again.ledger.run.requests == 0 and again.ledger.total.requests == ledger["total"]["requests"]


def test_cli_with_the_test_server(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seed_q = ["Tom has 4 apples and buys 6 more. How many apples does he have?",
              "A box holds 12 eggs. How many eggs are in 5 boxes?"]
    seeds.write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n"
                             for i, (q, a) in enumerate(zip(seed_q, [10, 60]))))
    new = ["Lena reads 15 pages a day for 4 days. How many pages does she read?",
           "A shelf has 7 rows of 9 books. How many books are on the shelf?",
           "Sam has 30 marbles and gives 12 to Ana. How many marbles does Sam keep?"]
    write = lambda q: f"New question: {q}\nSolution: ...\nCheck: fine.\nFinal question: {q}"  # noqa: E731
    script = {
        seed_q[0]: {"cot": [write(new[0]), write(new[2])]},
        seed_q[1]: {"cot": [write(new[1]), "New question: A shelf has"]},  # the second is truncated: no final question
        new[0]: {"pot": ["ans = 15 * 4"], "eot": ["pages = 15 * 4\nans = pages"]},  # agree: accepted
        new[1]: {"pot": ["ans = 7 * 9"], "eot": ["books = 7 + 9\nans = books"]},  # disagree: rejected
    }
    evals = tmp_path / "eval.jsonl"  # new[2] is an evaluation question: decontaminated
    evals.write_text(json.dumps({"id": "e1", "question": new[2], "answer": 18}) + "\n")
    out = tmp_path / "synth.jsonl"
    with TeacherServer(script) as server:
        args = ["synth", "--seed-data", str(seeds), "--n", "4", "--teacher", "openai:m", "--base-url", server.url,
                "--api-key", "x", "--samples", "1", "--decontaminate", str(evals), "-o", str(out), "--no-progress",
                "--workers", "1"]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert server.requests == 4 + 2 * 2  # 4 questions written, 2 of them solved with 2 thoughts
        assert "accepted" in res.output and "contaminated" in res.output
        rerun = CliRunner().invoke(main, args)  # resumes from the journals: sends nothing
        assert rerun.exit_code == 0 and server.requests == 8
    accepted = read_records(out)
    assert [(r.question, r.answer, r.meta["agreement"]) for r in accepted] == [(new[0], 60, 1.0)]
    reasons = {r.question or r.meta["raw"]: r.meta["reason"] for r in read_records(paths(out)["rejected"])}
    assert reasons == {new[1]: "no agreement", new[2]: "contaminated (e1)", "New question: A shelf has": "no final question"}
    report = json.loads(paths(out)["report"].read_text())
    assert report["ledger"]["total"]["prompt_tokens"] > 0 and "precision" not in report
