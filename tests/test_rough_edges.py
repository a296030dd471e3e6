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
    assert "1 of 4 samples got no usable answer from the teacher" in res.output


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
