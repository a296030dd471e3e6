from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.data import load
from distill.records import InputError, Record, read_records, write_jsonl


@pytest.mark.parametrize(
    "spec, n, first_id, first_gold",
    [
        ("gsm8k:test", 1319, "gsm8k:test/0", 18),
        ("gsm8k:train", 7473, "gsm8k:train/0", 72),
        ("svamp", 1000, "svamp/chal-1", 51),
        ("multiarith", 600, "multiarith/0", 39),
    ],
)
def test_named_sets(shared_data: Path, spec: str, n: int, first_id: str, first_gold: int) -> None:
    ds = load(spec, data_root=shared_data)
    assert len(ds.records) == n and not ds.skipped
    rec = ds.records[0]
    assert (rec.id, rec.answer) == (first_id, first_gold) and rec.question


def test_asdiv_skips_non_numeric_golds(shared_data: Path) -> None:
    ds = load("asdiv", data_root=shared_data)
    assert len(ds.records) + len(ds.skipped) == 2305
    assert ds.records[0].answer == 9  # "9 (apples)"
    reasons = " ".join(s.reason for s in ds.skipped)
    assert "'2:3'" in reasons or ":" in reasons
    assert all(isinstance(r.answer, (int, float)) for r in ds.records)


def test_hub_ids_read_local_copies(shared_data: Path) -> None:
    assert len(load("openai/gsm8k:test", data_root=shared_data).records) == 1319


def test_limit_and_shard(shared_data: Path) -> None:
    ids = [r.id for r in load("gsm8k:test", limit=10, shard="1/3", data_root=shared_data).records]
    assert ids == ["gsm8k:test/1", "gsm8k:test/4", "gsm8k:test/7"]
    with pytest.raises(InputError, match="shard"):
        load("gsm8k:test", shard="3/3", data_root=shared_data)


def test_generic_files(tmp_path: Path) -> None:
    jl = tmp_path / "mine.jsonl"
    jl.write_text('{"q": "1+1?", "a": "#### 2"}\n{"q": "ratio?", "a": "2:3"}\n')
    ds = load(str(jl), question_field="q", answer_field="a")
    assert [(r.question, r.answer) for r in ds.records] == [("1+1?", 2)]
    assert len(ds.skipped) == 1 and "line 2" in ds.skipped[0].reason
    csv = tmp_path / "mine.csv"
    csv.write_text("question,answer\nHow many?,1\nAnd now?,\"1,234\"\n")
    assert [r.answer for r in load(str(csv)).records] == [1, 1234]
    with pytest.raises(InputError, match=r"mine.jsonl:1: missing field 'question'"):
        load(str(jl))


def test_unknown_spec() -> None:
    with pytest.raises(InputError, match="unknown data set"):
        load("nonsense")


def test_record_round_trip_keeps_unknown_fields(tmp_path: Path) -> None:
    rec = Record(id="a", question="q", answer=3, thought="pot", rationale="ans = 3", meta={"k": 1})
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [rec, {"id": "b", "question": "q2", "extra": [1, 2]}])
    back = read_records(path)
    assert back[0] == rec and back[1].meta == {"extra": [1, 2]}
    assert json.loads(path.read_text().splitlines()[0])["thought"] == "pot"
