from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from distill.cli import main


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


COT = [
    {"id": 1, "question": "2+2?", "rationale": "2 + 2 = 4. The answer is 4.", "answer": "#### 4", "extra": "kept"},
    {"question": "3*3?", "rationale": "3 * 3 = 10. The answer is 10.", "answer": 9},
    {"question": "?", "rationale": "I cannot tell.", "answer": 1},
    {"question": "?", "rationale": "The answer is 5.", "answer": "2:3"},
]


def test_validate_cot_keeps_fields_in_order(tmp_path: Path) -> None:
    src, out = _write(tmp_path / "in.jsonl", COT), tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["validate", "--thought", "cot", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = _read(out)
    assert list(rows[0]) == ["id", "question", "rationale", "answer", "extra", "prediction", "status", "correct"]
    assert [(r["prediction"], r["status"], r["correct"]) for r in rows] == [
        (4, "ok", True), (10, "ok", False), (None, "no-answer", False), (5, "ok", None)
    ]
    assert "kept (correct)" in res.output


def test_validate_pot_on_recorded_programs(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "recorded" / "multiarith_pot_codex_zeroshot.jsonl"
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(
        main, ["validate", "--thought", "pot", str(src), "--rationale-field", "generated", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = _read(out)
    assert len(rows) == 599
    # The recording harness stored abs() of each answer and None for failures (see test_executor).
    ran = [r for r in rows if r["executed"] is not None]
    agree = sum(r["prediction"] is not None and abs(abs(r["prediction"]) - r["executed"]) < 1e-6 for r in ran)
    assert agree >= len(ran) - 1  # one program returns a 4-tuple, which the harness reduced to a number
    assert all(r["status"] != "ok" for r in rows if r["executed"] is None)
    assert 0.9 < sum(bool(r["correct"]) for r in rows) / len(rows) < 0.95  # README: 92.2% match


def test_bad_inputs_exit_2_with_location(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(COT[0]) + "\n{not json\n")
    res = runner.invoke(main, ["validate", "--thought", "cot", str(bad), "-o", str(out)])
    assert res.exit_code == 2 and f"{bad}:2: malformed JSON" in res.output
    missing = _write(tmp_path / "missing.jsonl", [{"question": "q", "answer": 1}])
    res = runner.invoke(main, ["validate", "--thought", "cot", str(missing), "-o", str(out)])
    assert res.exit_code == 2 and f"{missing}:1: missing field 'rationale'" in res.output
    res = runner.invoke(main, ["validate", "--thought", "xot", str(missing), "-o", str(out)])
    assert res.exit_code == 2 and "xot" in res.output
    assert not out.exists()


def test_existing_output_is_never_clobbered(tmp_path: Path) -> None:
    src, out = _write(tmp_path / "in.jsonl", COT), tmp_path / "out.jsonl"
    out.write_text("precious\n")
    res = CliRunner().invoke(main, ["validate", "--thought", "cot", str(src), "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert out.read_text() == "precious\n"
    res = CliRunner().invoke(main, ["validate", "--thought", "cot", str(src), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0 and len(_read(out)) == 4
