from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import transformers
from click.testing import CliRunner

from distill.cli import main
from distill.cues import load_cues, student_input
from distill.data import load
from distill.decontam import EvalIndex
from distill.dedupe import Deduper, normalise
from distill.mix import COLUMNS, mix
from distill.records import Record, write_jsonl
from distill.thoughts import thought_names

TEACHER = "openai:gpt-3.5-turbo"


def generated(q: Record, thought: str, rationale: str, *, correct: bool | None = True, sample: int = 0) -> Record:
    """A line as `distill generate` writes it."""
    wrong = correct is False
    return Record(
        id=q.id, question=q.question, answer=q.answer, source=q.source, thought=thought, rationale=rationale,
        prediction=q.answer + 1 if wrong else q.answer, status="ok", correct=correct, model=TEACHER, sample=sample,
        meta={"prompt_hash": "0f3a", "raw": rationale, "usage": {"completion_tokens": 20}},
    )


def scripted(questions: list[Record]) -> tuple[list[Record], list[Record]]:
    """Scripted CoT records and PoT/EoT records, with known wrong answers and duplicates.

    Per question: CoT samples 0-2 (1 repeats 0 with other spacing and `.0` numbers: a normalised
    duplicate; 2 is an exact copy of 0), PoT 0 right and 1 wrong, EoT 0 right."""
    cot, code = [], []
    for q in questions:
        a = q.answer
        cot += [
            generated(q, "cot", f"We add it up.\nThe answer is {a}.\n", sample=0),
            generated(q, "cot", f"  We add  it up.  The answer is {a}.0.", sample=1),
            generated(q, "cot", f"We add it up.\nThe answer is {a}.", sample=2),
        ]
        code += [
            generated(q, "pot", f"total = {a}\nans = total", sample=0),
            generated(q, "pot", f"total = {a + 1}\nans = total", correct=False, sample=1),
            generated(q, "eot", f"% the total is x:\ntotal = x\ntotal = {a}\nans = total", sample=0),
        ]
    return cot, code


@pytest.fixture
def runs(tmp_path: Path, shared_data: Path) -> dict:
    """Generate-style outputs on 30 real GSM8K train questions plus two evaluation questions
    (GSM8K test verbatim; SVAMP with its numbers changed) that must be decontaminated."""
    train = load("gsm8k:train", limit=30, data_root=shared_data).records
    test0 = load("gsm8k:test", limit=1, data_root=shared_data).records[0]
    svamp = load("svamp", limit=1, data_root=shared_data).records[0]
    leaked = [
        Record(id="mine/1", question=test0.question, answer=test0.answer, source="mine"),
        Record(id="mine/2", question=svamp.question.replace("5", "7"), answer=svamp.answer, source="mine"),
    ]
    cot, code = scripted(train + leaked)
    paths = [tmp_path / "runs" / "cot.jsonl", tmp_path / "runs" / "code.jsonl"]
    write_jsonl(paths[0], cot)
    write_jsonl(paths[1], code)
    return {"paths": [str(p) for p in paths], "train": train, "leaked": leaked, "data": str(shared_data)}


def _mix_cli(args: list[str]) -> object:
    return CliRunner().invoke(main, ["mix", *args])


def test_cli_builds_dataset_dict_jsonl_card(tmp_path: Path, runs: dict) -> None:
    out = tmp_path / "mtd"
    res = _mix_cli([*runs["paths"], "-o", str(out), "--student-cues", "etd", "--data-dir", runs["data"],
                    "--val-fraction", "0.2"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} >= {"dataset_dict.json", "train", "validation", "train.jsonl",
                                                "validation.jsonl", "README.md", "mix.json"}
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation"} and tuple(dd["train"].column_names) == COLUMNS
    rows = [*dd["train"], *dd["validation"]]
    assert rows == [json.loads(line) for s in ("train", "validation") for line in (out / f"{s}.jsonl").open()]

    # Dropped as contaminated: the 2 planted questions and one real GSM8K train question (train/20,
    # Bella's stamps, the same problem as GSM8K test/632 with other numbers); 29 questions x 3 thoughts survive.
    meta = json.loads((out / "mix.json").read_text())
    counts = meta["counts"]
    assert counts["in"] == {"cot": 96, "pot": 64, "eot": 32}
    assert counts["dropped"]["wrong answer"] == {"pot": 32}
    assert counts["dropped"]["contaminated"] == {"cot": 9, "pot": 3, "eot": 3}
    assert counts["dropped"]["duplicate (exact)"] == {"cot": 29}
    assert counts["dropped"]["duplicate (normalised)"] == {"cot": 29}
    assert counts["kept"] == {"cot": 29, "pot": 29, "eot": 29}
    assert counts["questions"] == {"train": 23, "validation": 6}
    flagged = meta["decontamination"]["flagged"]
    assert [(f["question_id"], f["eval_id"]) for f in flagged] == [
        ("gsm8k:train/20", "gsm8k:test/632"), ("mine/1", "gsm8k:test/0"), ("mine/2", "svamp/chal-1")]
    assert meta["cues"] == load_cues("etd") and meta["command"].startswith("distill mix ")

    cues = load_cues("etd")
    for row in rows:
        assert row["input"] == student_input(row["question"], row["thought"], cues)
        assert row["target"] == row["target"].strip() and row["teacher"] == TEACHER
    first = next(r for r in rows if r["question_id"] == "gsm8k:train/0" and r["thought"] == "pot")
    assert first["id"] == "gsm8k:train/0/pot/0" and first["answer"] == 72.0
    assert first["input"].endswith("Let’s break down the code step by step\n")

    for text in ("dropped: contaminated", "dropped: wrong answer", "mine/1 ~ gsm8k:test/0"):
        assert text in res.output
    card = (out / "README.md").read_text()
    assert meta["command"] in card and "| cot | 23 | 6 |" in card and TEACHER in card


def test_no_leak_between_splits_or_into_eval_sets(tmp_path: Path, runs: dict) -> None:
    result = mix(runs["paths"], tmp_path / "mtd", val_fraction=0.3, data_dir=runs["data"])
    dd = datasets.load_from_disk(str(tmp_path / "mtd"))
    train_q, val_q = set(dd["train"]["question"]), set(dd["validation"]["question"])
    assert train_q and val_q and not train_q & val_q
    assert len(val_q) == round(0.3 * 29)
    index = EvalIndex.load(data_root=runs["data"])
    assert all(index.match(q) is None for q in train_q | val_q)
    assert {q.question for q in runs["leaked"]}.isdisjoint(train_q | val_q)
    assert result.flagged[1]["eval_id"] == "gsm8k:test/0" and result.flagged[1]["score"] == 1.0


def test_rebuild_is_byte_identical(tmp_path: Path, runs: dict) -> None:
    out = tmp_path / "mtd"
    args = [*runs["paths"], "-o", str(out), "--data-dir", runs["data"], "--val-fraction", "0.2", "--seed", "3"]

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert _mix_cli(args).exit_code == 0
    first = snapshot()
    res = _mix_cli([*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert snapshot() == first and len(first) >= 10
    assert not list(tmp_path.glob(".mtd.*"))  # no temp or old directory left behind

    res = _mix_cli([*args[:-1], "4", "--overwrite"])
    assert res.exit_code == 0 and (out / "validation.jsonl").read_bytes() != first["validation.jsonl"]


def test_thoughts_cap_balance_and_length(tmp_path: Path, runs: dict) -> None:
    base = dict(decontaminate=(), val_fraction=0)
    r = mix(runs["paths"], tmp_path / "a", thoughts=["cot", "eot"], **base)
    assert r.counts["kept"] == {"cot": 32, "eot": 32} and r.counts["dropped"]["thought not selected"] == {"pot": 64}
    assert r.counts["splits"]["validation"] == {} and r.counts["questions"]["validation"] == 0

    # Keeping wrong answers lets the PoT sample 1 through; the cap then keeps sample 0 only.
    r = mix(runs["paths"], tmp_path / "b", keep_incorrect=True, per_question=1, **base)
    assert r.counts["dropped"]["over --per-question"] == {"pot": 32}
    assert {row["target"].split("\n")[0] for row in map(json.loads, (tmp_path / "b" / "train.jsonl").open())
            if row["thought"] == "pot"} == {f"total = {q.answer}" for q in runs["train"] + runs["leaked"]}

    # Balance: drop half the EoT records first, then every thought comes down to EoT's count.
    cot, code = scripted(runs["train"])
    code = [rec for rec in code if rec.thought != "eot" or int(rec.id.rsplit("/", 1)[1]) % 2]
    write_jsonl(tmp_path / "uneven.jsonl", cot + code)
    r = mix([tmp_path / "uneven.jsonl"], tmp_path / "c", balance=True, **base)
    assert r.counts["kept"] == {"cot": 15, "pot": 15, "eot": 15}

    tok = transformers.ByT5Tokenizer()  # one token per byte: needs no files
    r = mix(runs["paths"], tmp_path / "d", tokenizer=tok, max_source_tokens=300, max_target_tokens=45, **base)
    kept = [json.loads(line) for line in (tmp_path / "d" / "train.jsonl").open()]
    long_source = r.counts["dropped"]["source too long"]  # long questions; counted there first
    assert long_source["eot"] > 0
    assert r.counts["dropped"]["target too long"] == {"eot": 32 - long_source["eot"]}  # EoT rationales are longest
    assert all(len(row["input"].encode()) < 300 and len(row["target"].encode()) < 45 for row in kept)
    assert json.loads((tmp_path / "d" / "mix.json").read_text())["options"]["tokenizer"] == "ByT5Tokenizer"


def test_user_cues_travel_with_the_data(tmp_path: Path, runs: dict) -> None:
    cues = tmp_path / "cues.yaml"
    cues.write_text('mine:\n  cot: "Q: {question}\\nCoT:"\n  pot: "Q: {question}\\nPoT:"\n  eot: "Q: {question}\\nEoT:"\n')
    out = tmp_path / "mtd"
    res = _mix_cli([*runs["paths"], "-o", str(out), "--student-cues", "mine", "--cues-file", str(cues),
                    "--decontaminate", "none"])
    assert res.exit_code == 0, res.output
    row = json.loads((out / "train.jsonl").open().readline())
    assert row["input"] == f"Q: {row['question']}\nCoT:"
    assert json.loads((out / "mix.json").read_text())["cues"]["eot"] == "Q: {question}\nEoT:"


def test_bad_inputs_get_clear_errors(tmp_path: Path, runs: dict, shared_data: Path) -> None:
    out = str(tmp_path / "mtd")
    res = _mix_cli([str(shared_data / "gsm8k" / "test.jsonl"), "-o", out])
    assert res.exit_code == 2
    assert f"{shared_data / 'gsm8k' / 'test.jsonl'}:1: not a `distill generate` output: missing 'id', 'thought', 'rationale', 'correct'" in res.output

    q = runs["train"][0]
    other = Record(id="elsewhere/9", question=q.question + "  ", answer=q.answer + 1)
    write_jsonl(tmp_path / "conflict.jsonl", [generated(q, "cot", "The answer is 72."), generated(other, "cot", "x")])
    res = _mix_cli([str(tmp_path / "conflict.jsonl"), "-o", out])
    assert res.exit_code == 2 and "conflict.jsonl:2: conflicting gold answers for question 'elsewhere/9'" in res.output
    assert "73 here, 72 at" in res.output and not Path(out).exists()

    res = _mix_cli([*runs["paths"], "-o", out, "--thoughts", "cot,tot"])
    assert res.exit_code == 2 and f"unknown thought 'tot' (known: {', '.join(thought_names())})" in res.output

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    res = _mix_cli([*runs["paths"], "-o", str(precious), "--decontaminate", "none"])
    assert res.exit_code == 2 and "not empty; pass --overwrite" in res.output
    res = _mix_cli([*runs["paths"], "-o", str(precious), "--decontaminate", "none", "--overwrite"])
    assert res.exit_code == 2 and "not a `distill mix` output" in res.output
    assert (precious / "notes.txt").read_text() == "keep me"


def test_gsm8k_train_against_eval_sets(shared_data: Path) -> None:
    """The measured effect of the default threshold (docs/mix.md): 15 of 7,473 train questions."""
    index = EvalIndex.load(data_root=shared_data)
    hits = {rec.id: hit for rec in load("gsm8k:train", data_root=shared_data).records if (hit := index.match(rec.question))}
    assert len(hits) == 15
    assert hits["gsm8k:train/1314"].eval_id == "gsm8k:test/602"  # "A train/plane travels ... miles in 3 hours"
    assert hits["gsm8k:train/4192"].eval_id.startswith("asdiv/")  # red, yellow and blue chairs


def test_normalised_duplicates() -> None:
    assert normalise(" Pay $1,000.50 for\n\n 3.0 apples ") == "Pay $1000.5 for 3 apples"
    assert normalise("1,2,3") == "1,2,3"
    seen = Deduper()
    assert [seen.check(1, t) for t in ("a = 2", "a = 2", "a  =  2.0", "a = 3")] == [None, "exact", "normalised", None]
    assert seen.check(2, "a = 2") is None  # another question
