"""What a new user hit between the commands (issue 23): each item fails here if it comes back."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import Faults, TeacherServer  # noqa: E402
from test_generate import workload, write_data  # noqa: E402

from distill.cli import COMMANDS, main  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _generate(tmp_path: Path, url: str, data: Path, *extra: str) -> object:
    return CliRunner().invoke(main, ["generate", "--thoughts", "cot", "--data", str(data), "--teacher", "openai:m",
                                     "--base-url", url, "--api-key", "k", "--max-retries", "0", "--no-progress",
                                     "-o", str(tmp_path / "out.jsonl"), *extra])


def test_generate_fails_when_every_request_failed(tmp_path: Path) -> None:
    items, _ = workload(3)
    res = _generate(tmp_path, f"http://127.0.0.1:{_free_port()}/v1", write_data(tmp_path / "d.jsonl", items),
                    "--timeout", "2")
    assert res.exit_code == 1, res.output
    line = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "every request to openai:m failed (connection: 3)" in line[0]
    assert "cannot be reached" in line[0]


def test_generate_partial_failure_has_its_own_exit_status(tmp_path: Path) -> None:
    items, script = workload(4)
    with TeacherServer(script, faults=Faults(sequence=["500", "", "", ""])) as server:
        res = _generate(tmp_path, server.url, write_data(tmp_path / "d.jsonl", items), "--concurrency", "1")
    assert res.exit_code == 3, res.output
    assert "1 of 4 samples got no answer from the teacher" in res.output


def test_generate_reports_items_whose_gold_is_not_a_number(tmp_path: Path) -> None:
    items, script = workload(2)
    data = write_data(tmp_path / "d.jsonl", items)
    data.write_text(data.read_text() + json.dumps({"id": "x", "question": "Which?", "answer": "red and blue"}) + "\n")
    with TeacherServer(script) as server:
        res = _generate(tmp_path, server.url, data)
    assert res.exit_code == 0, res.output
    assert "skipped 1 item whose gold answer cannot be used (first: x: line 3: gold answer is not one number" in res.output


def _all_commands() -> list[tuple[str, click.Command]]:
    return [(name, main.get_command(click.Context(main), name)) for name in COMMANDS]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_renders_with_an_example_and_every_option_has_help(name: str) -> None:
    res = CliRunner().invoke(main, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output, f"distill {name} --help has no example"
    command = main.get_command(click.Context(main), name)
    bare = [p.opts[-1] for p in command.params if isinstance(p, click.Option) and not p.help]
    assert not bare, f"distill {name}: options without help: {bare}"


def test_typos_are_gone() -> None:
    root = Path(__file__).resolve().parents[1] / "distill"
    text = "\n".join(p.read_text() for p in root.rglob("*.py"))
    assert "at at column" not in text and "records to {" not in text.replace("record{'s'", "")


def test_mix_that_keeps_nothing_fails_and_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = CliRunner().invoke(main, ["mix", str(empty), "-o", str(tmp_path / "mtd"), "--decontaminate", "none"])
    assert res.exit_code == 2 and "nothing to mix: the inputs hold no rationales; nothing written" in res.output
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"id": "a", "question": "1+1?", "answer": 2, "thought": "cot", "rationale": "3",
                                 "prediction": 3, "status": "ok", "correct": False, "model": "m"}) + "\n")
    res = CliRunner().invoke(main, ["mix", str(wrong), "-o", str(tmp_path / "mtd"), "--decontaminate", "none"])
    assert res.exit_code == 2 and "all 1 rationales were dropped (wrong answer: 1)" in res.output, res.output
    assert not (tmp_path / "mtd").exists()


def test_train_on_an_empty_set_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    data = tmp_path / "mtd"
    cols = {"id": [], "input": [], "target": [], "thought": []}
    DatasetDict(train=Dataset.from_dict(cols), validation=Dataset.from_dict(cols)).save_to_disk(data)
    res = CliRunner().invoke(main, ["train", "--student", "tiny-t5", "--data", str(data), "-o", str(tmp_path / "st"),
                                    "--max-steps", "5"])
    assert res.exit_code == 2 and "the training set is empty" in res.output, res.output
    assert not (tmp_path / "st").exists()


def test_a_failed_train_leaves_no_output_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets import Dataset, DatasetDict
    from test_train import CUES, _rows

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "mtd"
    DatasetDict(train=Dataset.from_list(_rows(8, 0))).save_to_disk(data)
    (data / "mix.json").write_text(json.dumps({"cues": CUES}))
    out = tmp_path / "st1"
    res = CliRunner().invoke(main, ["train", "--student", "no-such-student", "--data", str(data), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "cannot load a tokenizer from 'no-such-student'" in res.output or "cannot load a model" in res.output
    assert "HF_HUB_OFFLINE is set" in res.output and "tiny-t5" in res.output  # the presets are listed
    assert not out.exists()
    res = CliRunner().invoke(main, ["train", "--student", "tiny-t5", "--data", str(data), "-o", str(out),
                                    "--max-steps", "1", "--set", "tiny.d_model=16", "--set", "tiny.layers=1",
                                    "--set", "tiny.heads=2", "--set", "trackers=none"])
    assert res.exit_code == 0, res.output  # the corrected command is not blocked by the failed one
    card = (out / "README.md").read_text()
    assert "base_model: tiny-t5" in card and "steps: 1" in card and "Not evaluated yet" in card
    res = CliRunner().invoke(main, ["eval", "--model", str(out), "--data", "world:test?n=2", "--thoughts", "cot",
                                    "--max-new-tokens", "4", "--expected-new-tokens", "2", "-o", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    card = (out / "README.md").read_text()
    assert "Not evaluated yet" not in card and "| data set | cot |" in card and "world:test" in card


def test_eval_with_a_missing_model_dir_fails_at_once(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "--model", "runs/no/such_dir", "--data", "world:test?n=2",
                                    "-o", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "'runs/no/such_dir': no such directory" in res.output


def test_eval_refuses_an_expected_length_of_zero(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["eval", "--model", "runs/no/such_dir", "--expected-new-tokens", "0",
                                    "-o", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "expected_new_tokens must be above 0, got 0.0" in res.output
    assert not (tmp_path / "ev").exists()


def test_piped_output_gets_plain_progress_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import distill.progress

    monkeypatch.setattr(distill.progress, "PLAIN_INTERVAL", 0.01)
    res = CliRunner().invoke(main, ["generate", "--thoughts", "cot,eot", "--data", "world:train?n=60", "--teacher",
                                    "world:", "-o", str(tmp_path / "g.jsonl")])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if x.startswith("generate: ")]
    assert lines and "120/120 requests" in lines[-1] and "ETA" in lines[-1]


def test_chart_shows_one_data_set_once_with_value_labels(tmp_path: Path) -> None:
    from distill.evaluation.report import chart_groups, write_chart

    summary = {"accuracy": {"pot": 0.5, "fallback": 0.625}}
    one = {"config": {"model": "m"}, "methods": ["pot", "fallback"], "datasets": {"svamp": summary, "overall": summary}}
    two = {**one, "datasets": {"svamp": summary, "asdiv": summary, "overall": summary}}
    assert chart_groups(one) == ["svamp"] and chart_groups(two) == ["svamp", "asdiv", "overall"]
    import matplotlib.axes

    labels: list[str] = []
    original = matplotlib.axes.Axes.bar_label
    matplotlib.axes.Axes.bar_label = lambda self, bars, **kw: labels.extend(  # type: ignore[method-assign]
        t.get_text() for t in original(self, bars, **kw))
    try:
        write_chart(one, tmp_path / "chart.png")
    finally:
        matplotlib.axes.Axes.bar_label = original  # type: ignore[method-assign]
    assert labels == ["50.0", "62.5"] and (tmp_path / "chart.png").stat().st_size > 1000


def test_the_cli_silences_the_libraries_bars_but_not_the_users_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from distill.cli import QUIET, quiet_libraries

    for key in QUIET:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # a user's own choice wins
    quiet_libraries()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "info"
