"""Tool-integrated evaluation: rows stop at the output marker, their cells run in the sandbox, the
output is fed back and decoding resumes; the static loop and the `generate` path give the same tokens."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.evaluation import evaluate_model
from distill.evaluation.backends import DecodeOptions, HFDecoder, TeacherDecoder
from distill.evaluation.plan import Batch
from distill.evaluation.script import Script
from distill.evaluation.tools import ToolPrompt, Trace
from distill.students import StudentSettings
from solvers.tir import STOP

NEW = 120
FREE = -1  # a token the model chooses


@pytest.fixture(scope="module")
def tok():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def _model(kind: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if kind == "seq2seq":
        return T5ForConditionalGeneration(T5Config(
            vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0,
            pad_token_id=0, eos_token_id=1, relative_attention_num_buckets=8, relative_attention_max_distance=16)).eval()
    return LlamaForCausalLM(LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=2,
                                        eos_token_id=1)).eval()


def _script(tok, rows: list[list[str | int]]) -> Script:
    """Rows of text pieces (forced) and counts of free tokens; EOS after the last piece."""
    import torch

    table = torch.full((len(rows), NEW), FREE)
    for r, row in enumerate(rows):
        ids: list[int] = []
        for piece in row:
            ids += [FREE] * piece if isinstance(piece, int) else tok(piece, add_special_tokens=False)["input_ids"]
        ids = (ids + [1])[:NEW]
        table[r, : len(ids)] = torch.tensor(ids)
    return Script(table)


ROWS = [
    # two cells, state carried from the first to the second; free tokens after each output
    ["Let me compute.\n```python\nx = 6 * 7\nprint(x)\n```\n" + STOP, 5, "\n```python\nprint(x + 1)\n```\n" + STOP, 3,
     "So \\boxed{43}."],
    ["No code here. \\boxed{1}"],  # no marker: one round
    # a cell that raises, then one that runs past the time limit: both outputs say so, decoding goes on
    ["```python\n1/0\n```\n" + STOP, 2, "```python\nwhile True: pass\n```\n" + STOP, "Then \\boxed{2}."],
    # more cells than rounds: the last round ends at its marker
    ["```python\nprint(1)\n```\n" + STOP] * 6,
]


def _decode(kind: str, tok, loop: str, rows=ROWS, device: str = "cpu", **options) -> list[Trace]:
    settings = StudentSettings(kind=kind, max_source_len=64)
    opts = DecodeOptions(max_new_tokens=NEW, loop=loop, max_rounds=3, output_tokens=40, cell_timeout=1.0, cell_workers=1,
                         **options)
    decoder = HFDecoder(_model(kind).to(device), tok, settings, opts, script=_script(tok, rows))
    assert (decoder.loop is not None) == (loop == "static")
    prompts = [ToolPrompt(f"Question {i}: {'x' * (3 * i)}") for i in range(len(rows))]
    [(indices, samples)] = list(decoder.decode(prompts, [Batch(list(range(len(rows))), len(rows), 32)]))
    assert indices == list(range(len(rows)))
    return [s[0] for s in samples]


CUDA = pytest.param("cuda", marks=pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no CUDA"))


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", CUDA])  # on CUDA the static loop's steps are CUDA graphs
@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_static_loop_and_generate_give_the_same_rounds(kind: str, device: str, tok) -> None:
    static, generated = _decode(kind, tok, "static", device=device), _decode(kind, tok, "generate", device=device)
    assert [(t.text, t.turns) for t in static] == [(t.text, t.turns) for t in generated]
    two, plain, failing, many = static
    assert [t.get("output") for t in two.turns] == ["42", "43", None]  # x carried over to the second cell
    assert two.text.endswith("So \\boxed{43}.") and two.text.count("```output\n") == 2
    assert plain.turns == [{"text": "No code here. \\boxed{1}"}] and plain.text == "No code here. \\boxed{1}"
    raised, timed_out, last = failing.turns
    assert raised["output"].startswith("ZeroDivisionError") and raised["status"] == "ok"
    assert timed_out["status"] == "timeout" and "timeout" in timed_out["output"]
    assert last["text"] == "Then \\boxed{2}." and failing.text.endswith("Then \\boxed{2}.")
    assert len(many.turns) == 3 and many.text.endswith(STOP) and "output" not in many.turns[-1]
    assert [t["output"] for t in many.turns[:2]] == ["1", "1"]


def test_sampling_runs_rounds_per_sample(tok) -> None:
    traces = _decode("causal", tok, "generate", rows=ROWS[:2], temperature=1.0, samples=2)
    assert all(isinstance(t, Trace) for t in traces)
    assert [t.get("output") for t in traces[0].turns] == ["42", "43", None]


@pytest.mark.slow
def test_evaluate_records_every_round_and_checks_the_trace(tmp_path: Path, tok) -> None:
    data = tmp_path / "qs.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}", "answer": a}) + "\n"
                            for i, a in enumerate([43, 1, 2, 5])))
    settings = StudentSettings(kind="causal", max_source_len=64)
    opts = DecodeOptions(max_new_tokens=NEW, max_rounds=3, output_tokens=40, cell_timeout=1.0, cell_workers=1)
    decoder = HFDecoder(_model("causal"), tok, settings, opts, script=_script(tok, ROWS))
    assert decoder.loop is not None  # greedy LLaMA: the static loop
    report = evaluate_model("tiny", str(data), tmp_path / "ev", thoughts="tir,cot", decoder=decoder, options=opts, workers=1,
                            timeout=1.0, show_progress=False)
    preds = {(p["id"], p["thought"]): p for p in map(json.loads, (tmp_path / "ev" / "predictions.jsonl").open())}
    assert preds[("0", "tir")]["correct"] is True and len(preds[("0", "tir")]["meta"]["turns"]) == 3
    assert preds[("1", "tir")]["correct"] is True
    assert preds[("2", "tir")]["status"] == "timeout"  # its cells time out again when checked
    assert "turns" not in preds[("0", "cot")]["meta"]  # the plain thought decodes as before, in its own batch
    assert json.loads((tmp_path / "ev" / "config.json").read_text())["max_rounds"] == 3
    assert report["datasets"]["qs"]["accuracy"]["tir"] == 0.5


class _Teacher:
    """Continues `Request.prefix`: writes a cell, then (seeing the output) the answer."""

    name = "scripted"

    def __init__(self) -> None:
        self.prefixes: list[str] = []

    async def complete(self, request):
        from distill.teachers.base import Completion

        self.prefixes.append(request.prefix)
        if not request.prefix:
            text = "Compute.\n```python\nprint(6 * 7)\n```\n"
        else:
            text = f"It printed {request.prefix.split(STOP)[-1].split()[0]}. \\boxed{{42}}"
        return [Completion(text, "stop") for _ in range(request.n)]

    async def aclose(self) -> None:
        pass


def test_teacher_decoder_runs_rounds_through_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = _Teacher()
    monkeypatch.setattr("distill.teachers.make_teacher", lambda spec: teacher)
    decoder = TeacherDecoder("scripted:x", DecodeOptions(max_rounds=3, cell_timeout=2.0, cell_workers=1))
    prompts = [decoder.prompt("What is 6 * 7?", "tir"), decoder.prompt("What is 6 * 7?", "cot")]
    [(_, [[trace], [plain]])] = list(decoder.decode(prompts))
    assert isinstance(trace, Trace) and [t.get("output") for t in trace.turns] == ["42", None]
    assert trace.text.endswith("It printed 42. \\boxed{42}") and f"{STOP}\n42\n```\n" in trace.text
    assert teacher.prefixes[-1].endswith(f"{STOP}\n42\n```\n") and isinstance(plain, str)
