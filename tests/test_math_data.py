"""MATH loader (distill/math_data.py) on the publishers' files and on small files of our own."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from distill.math_data import SUBJECTS, load_math, parse_level
from distill.records import InputError, Record

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "math" / "test.jsonl").is_file(), reason="needs ../shared/data/math")


@needs_data
def test_math_test_split():
    ds = load_math("math:test", data_root=SHARED)
    assert len(ds.records) == 5000 and not ds.skipped
    r = ds.records[1]
    assert isinstance(r, Record) and r.source == "math:test" and r.id == "math:test/test/algebra/2.json"
    assert r.answer == r"\frac{1}{2}" and r.meta["level"] == 5 and r.meta["subject"] == "Algebra"
    assert set(Counter(x.meta["subject"] for x in ds.records)) == set(SUBJECTS)


@needs_data
def test_math_train_level_unknown_and_filters():
    ds = load_math("math:train", data_root=SHARED)
    assert len(ds.records) + len(ds.skipped) == 7500
    assert sum(r.meta["level"] is None for r in ds.records) == 2
    hard_geo = load_math("math:test", level=[5], subject=["Geometry"], data_root=SHARED)
    assert hard_geo.records and all(r.meta["level"] == 5 and r.meta["subject"] == "Geometry" for r in hard_geo.records)
    assert len(hard_geo.records) < len(load_math("math:test", subject=["geometry"], data_root=SHARED).records)
    same = load_math("math:test?level=5&type=Geometry", data_root=SHARED)
    assert [r.id for r in same.records] == [r.id for r in hard_geo.records]
    with pytest.raises(InputError, match="unknown filter"):
        load_math("math:test?lvl=5", data_root=SHARED)


@needs_data
def test_math500_boxed_matches_stated_answer():
    ds = load_math("math500", data_root=SHARED)
    assert len(ds.records) == 500 and ds.records[0].meta["level"] == 2
    assert sum(r.answer == r.meta["stated_answer"] for r in ds.records) >= 490
    assert load_math("HuggingFaceH4/MATH-500", data_root=SHARED).records[0].id == ds.records[0].id


def test_local_file_and_errors(tmp_path):
    f = tmp_path / "mine.jsonl"
    rows = [{"problem": "1+1?", "solution": r"It is $\boxed{2}$.", "level": "Level ?", "type": "Prealgebra"},
            {"problem": "x?", "solution": "no box", "level": "Level 1", "type": "Algebra"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_math(str(f))
    assert [r.answer for r in ds.records] == ["2"] and ds.records[0].meta["level"] is None
    assert len(ds.skipped) == 1
    f.write_text(json.dumps({"solution": "x"}) + "\n")
    with pytest.raises(InputError, match="mine.jsonl.*'problem'"):
        load_math(str(f))
    with pytest.raises(InputError, match="splits train and test"):
        load_math("math:dev", data_root=tmp_path)
    with pytest.raises(InputError, match="unknown MATH set"):
        load_math("gsm8k")


def test_parse_level():
    assert [parse_level(x) for x in ("Level 3", 4, "Level ?", None)] == [3, 4, None, None]
