"""`distill eval`: metrics against hand-computed values, combination rules, resume, the CLI."""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch.utils._python_dispatch import TorchDispatchMode

from distill.cli import main
from distill.evaluation import evaluate_model, score_predictions
from distill.evaluation.graphs import SEGMENT, GreedyLoop
from distill.evaluation.metrics import ks_for, majority, pass_at_k
from distill.evaluation.plan import Batch, plan_batches, plan_cost
from distill.records import Record

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rec(source: str, rid: str, gold: float, thought: str, pred: float | None, status: str = "ok", sample: int = 0) -> dict:
    correct = None if gold is None else (status == "ok" and pred == gold)
    return Record(id=rid, question=f"q {rid}", answer=gold, source=source, thought=thought, rationale="...",
                  prediction=pred if status == "ok" else None, status=status, correct=correct, model="m",
                  sample=sample).to_dict()


# Two data sets, hand-scored in the comments: (pot, eot, cot) per question.
SCRIPTED = [
    rec("a", "1", 4, "pot", 4), rec("a", "1", 4, "eot", 5), rec("a", "1", 4, "cot", 4),  # right, wrong, right
    rec("a", "2", 6, "pot", None, "syntax"), rec("a", "2", 6, "eot", 6), rec("a", "2", 6, "cot", 7),  # fail, right, wrong
    rec("a", "3", 10, "pot", 9), rec("a", "3", 10, "eot", None, "parse"), rec("a", "3", 10, "cot", None, "no-answer"),
    rec("b", "1", 3, "pot", None, "timeout"), rec("b", "1", 3, "eot", None, "under-determined"), rec("b", "1", 3, "cot", 3),
]


def _score(tmp_path: Path, fallback: str, name: str) -> dict:
    src = _write(tmp_path / "pred.jsonl", SCRIPTED)
    return score_predictions([src], tmp_path / name, fallback=fallback, vote=True)["datasets"]


def test_pass_at_k_matches_brute_force() -> None:
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(combinations(outcomes, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    assert ks_for(1) == [1] and ks_for(4) == [1, 2, 4] and ks_for(5) == [1, 2, 4, 5]


def test_majority_breaks_ties_by_position_and_ignores_abstentions() -> None:
    assert majority([7, 6]) == 0 and majority([None, 6, 7]) == 1
    assert majority([3, 5, 5]) == 1 and majority([None, None]) is None
    assert majority([2.5000001, 2.5, 1]) == 0  # same answer to 6 significant digits


def test_fallback_order_changes_the_result(tmp_path: Path) -> None:
    pot_first = _score(tmp_path, "pot,eot,cot", "o1")
    assert pot_first["a"]["accuracy"] == pytest.approx(
        {"pot": 1 / 3, "eot": 1 / 3, "cot": 1 / 3, "fallback": 2 / 3, "vote": 2 / 3, "oracle": 2 / 3})
    assert pot_first["b"]["accuracy"] == {"pot": 0, "eot": 0, "cot": 1, "fallback": 1, "vote": 1, "oracle": 1}
    assert pot_first["overall"]["accuracy"] == pytest.approx(
        {"pot": 1 / 4, "eot": 1 / 4, "cot": 2 / 4, "fallback": 3 / 4, "vote": 3 / 4, "oracle": 3 / 4})
    eot_first = _score(tmp_path, "eot,pot,cot", "o2")
    assert eot_first["a"]["accuracy"]["fallback"] == pytest.approx(1 / 3)  # a/1 now answered by eot's 5
    assert eot_first["a"]["accuracy"]["vote"] == pytest.approx(2 / 3)
    # a/2: a tie between eot's 6 and cot's 7; the fallback order decides it.
    cot_first = _score(tmp_path, "cot,eot,pot", "o3")
    assert cot_first["a"]["accuracy"]["vote"] == pytest.approx(1 / 3)
    items = {(r["source"], r["id"]): r for r in _read(tmp_path / "o3" / "items.jsonl")}
    assert items[("a", "2")]["vote"] == {"prediction": 7, "thought": "cot", "correct": False}
    assert items[("a", "3")]["fallback"] == {"prediction": 9, "thought": "pot", "correct": False}
    assert pot_first["overall"]["failures"]["pot"] == {"correct": 1, "syntax": 1, "wrong": 1, "timeout": 1}


def test_sampling_metrics(tmp_path: Path) -> None:
    # q1 (gold 5): 3, 5, 5, 3 -> c=2, majority ties go to the first seen (3: wrong).
    # q2 (gold 1): 2, 1, 1, failed -> c=2; maj@1 and maj@2 answer 2 (wrong), maj@4 answers 1 (right).
    rows = [rec("s", "1", 5, "cot", p, sample=i) for i, p in enumerate([3, 5, 5, 3])]
    rows += [rec("s", "2", 1, "cot", p, "ok" if p else "no-answer", sample=i) for i, p in enumerate([2, 1, 1, None])]
    s = score_predictions([_write(tmp_path / "p.jsonl", rows)], tmp_path / "out")["datasets"]["s"]
    assert s["samples"] == 4 and s["accuracy"]["cot"] == 0.5 and s["pass_ratio@n"]["cot"] == 0.5
    assert s["pass@k"]["cot"] == pytest.approx({"1": 0.5, "2": 5 / 6, "4": 1.0})
    assert s["maj@k"]["cot"] == {"1": 0.0, "2": 0.0, "4": 0.5}
    assert "PassRatio@4" in (tmp_path / "out" / "report.md").read_text()


def test_plan_batches_respects_the_token_budget() -> None:
    lengths = [5, 100, 30, 60]
    batches = plan_batches(lengths, max_new_tokens=100, samples=1, token_budget=400, max_batch=8, step_cost=1000)
    assert batches == [Batch([1, 3], 2, 100), Batch([2, 0], 2, 30)]  # a high step cost: the fewest batches, each padded to its own
    for b in plan_batches(lengths * 10, max_new_tokens=50, samples=2, token_budget=1000, max_batch=8, pad_multiple=16):
        assert b.capacity * 2 * (b.length + 50) <= 1000 and b.length % 16 == 0 and len(b.indices) <= b.capacity
        assert all(lengths[i % 4] <= b.length for i in b.indices)


def _partitions(n: int):
    """Every way to cut range(n) into runs of neighbours, as lists of (start, end)."""
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        yield list(zip(cuts, cuts[1:]))


@pytest.mark.parametrize("step_cost,expected", [(0.0, None), (50.0, None), (400.0, None), (5000.0, None),
                                                (400.0, 8.0), (5000.0, 8.0)])
def test_plan_batches_finds_the_cheapest_buckets(step_cost: float, expected: float | None) -> None:
    """Against brute force over every bucketing of the length-sorted prompts; also under the
    continuous-batching model (`expected`: sequences end early, one tail per bucket, prefill paid)."""
    lengths = [300, 12, 40, 33, 35, 90, 8, 41, 64, 20, 38]
    new, budget, pad = 32, 600, 8
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    kw = dict(max_new_tokens=new, samples=1, step_cost=step_cost)
    if expected is not None:
        kw |= dict(expected=expected, prefill=30.0)

    def bucketed(spans):  # batches per bucket
        out = []
        for i, j in spans:
            length = -(-lengths[order[i]] // pad) * pad
            fit = max(1, min(4, budget // (length + new)))
            size = -(-(j - i) // -(-(j - i) // fit))
            out.append([Batch(order[s:min(s + size, j)], size, length) for s in range(i, j, size)])
        return out

    def cost(buckets):
        return sum(plan_cost(b, **kw) for b in buckets)

    best = min(cost(bucketed(spans)) for spans in _partitions(len(lengths)))
    plan = plan_batches(lengths, token_budget=budget, max_batch=4, pad_multiple=pad, **kw)
    shapes = {(b.capacity, b.length) for b in plan}
    assert cost([[b for b in plan if (b.capacity, b.length) == s] for s in shapes]) == pytest.approx(best)
    assert sorted(i for b in plan for i in b.indices) == list(range(len(lengths)))
    assert all(lengths[i] <= b.length and b.capacity * (b.length + new) <= budget for b in plan for i in b.indices)
    if step_cost == 0:  # nothing to gain from one batch more: the 300-token outlier pads no one else
        assert [b.indices for b in plan if b.length == 304] == [[0]]


def test_the_continuous_plan_pays_one_tail_per_bucket() -> None:
    """Sequences that end early: each bucket's tail costs a whole batch's steps, so fewer buckets than
    when every sequence makes all its tokens, but prefill keeps a long outlier apart."""
    lengths = [(i * 37) % 120 + 8 for i in range(2_000)] + [500]
    kw = dict(max_new_tokens=256, samples=1, token_budget=200_000, max_batch=512, pad_multiple=16, step_cost=50_000)
    forced = plan_batches(lengths, **kw)
    early = plan_batches(lengths, expected=60, prefill=100.0, **kw)
    shapes = lambda plan: {(b.capacity, b.length) for b in plan}
    assert 1 < len(shapes(early)) < len(shapes(forced))
    assert 2_000 in [i for b in early if b.length == 512 for i in b.indices] and sum(b.length == 512 for b in early) == 1


def test_plan_batches_scales_to_many_prompts() -> None:
    lengths = [(i * 37) % 300 + 1 for i in range(20_000)]
    batches = plan_batches(lengths, max_new_tokens=64, samples=1, token_budget=100_000, max_batch=1024, pad_multiple=16,
                           step_cost=50_000)
    assert sorted(i for b in batches for i in b.indices) == list(range(20_000))
    assert all(lengths[i] <= b.length and len(b.indices) <= b.capacity for b in batches for i in b.indices)
    one_bucket = [Batch(list(range(s, min(s + 275, 20_000))), 275, 304) for s in range(0, 20_000, 275)]  # 275 x (304 + 64) fits
    kw = dict(max_new_tokens=64, samples=1, step_cost=50_000)
    assert plan_cost(batches, **kw) < 0.75 * plan_cost(one_bucket, **kw)


def _tiny(kind: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if kind == "seq2seq":
        cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0,
                       pad_token_id=0, eos_token_id=1, relative_attention_num_buckets=8, relative_attention_max_distance=16)
        return T5ForConditionalGeneration(cfg).eval()
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    return LlamaForCausalLM(cfg).eval()


class _NoHostSync(TorchDispatchMode):
    """Fails on the ops that read a tensor on the host (not allowed while capturing a CUDA graph)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import torch

        aten = torch.ops.aten
        assert func not in (aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default, aten.nonzero.default,
                            aten.lift_fresh.default), func  # host reads; tensors from host data
        return func(*args, **(kwargs or {}))


class _Capture:
    """A `capture` for GreedyLoop on CPU: runs the step as a CUDA graph would record it (no host sync),
    then undoes its writes; keeps the steps captured. Set `loop` to the GreedyLoop it serves."""

    def __init__(self) -> None:
        self.loop: GreedyLoop | None = None
        self.steps: list = []

    def __call__(self, step, pool):
        written = [getattr(self.loop.state, name) for name in GreedyLoop.STATE]
        saved = [t.clone() for t in written]
        with _NoHostSync():
            step()
        for t, value in zip(written, saved):
            t.copy_(value)
        self.steps.append(step)
        return step


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
@pytest.mark.parametrize("force", [True, False])
def test_greedy_loop_matches_generate_with_bounded_shapes(kind: str, force: bool) -> None:
    """GreedyLoop against HF generate on a tiny random model, every batch of a bucket one shape; its
    decode step makes no host sync (so a CUDA graph can capture it) and is captured once per shape and segment."""
    import torch

    model = _tiny(kind)
    new = SEGMENT + 5  # two segments
    capture = _Capture()
    loop = capture.loop = GreedyLoop(model, max_new_tokens=new, pad_token_id=0, force_new_tokens=force, capture=capture)
    gen = torch.Generator().manual_seed(1)
    lengths = [3 + (i * 7) % 61 for i in range(24)]
    batches = plan_batches(lengths, max_new_tokens=new, samples=1, token_budget=6 * (64 + new), max_batch=64, pad_multiple=16,
                           step_cost=2000)
    shapes = {(b.capacity, b.length) for b in batches}
    assert len(batches) > len(shapes) >= 2
    for b in batches:
        ids = torch.zeros(b.capacity, b.length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(b.indices + b.indices[-1:] * (b.capacity - len(b.indices))):
            span = slice(b.length - lengths[i], None) if kind == "causal" else slice(0, lengths[i])
            ids[row, span] = torch.randint(2, 64, (lengths[i],), generator=gen)
            mask[row, span] = 1
        ours = loop(ids, mask)
        with torch.inference_mode():
            ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=0,
                                 **({"min_new_tokens": new} if force else {}))
        ref = ref[:, ids.shape[1]:] if kind == "causal" else ref[:, 1:]
        ref = torch.nn.functional.pad(ref, (0, new - ref.shape[1]), value=0)
        assert torch.equal(ours, ref)
    assert loop.shapes == sorted(shapes, key=lambda s: -s[1])
    assert len(loop.captured) == len(capture.steps) == len(shapes) * 2  # two segments per shape


QUESTIONS = [{"id": "1", "question": "Tom has 2 apples and gets 2 more. How many?", "answer": "#### 4"},
             {"id": "2", "question": "Six eggs?", "answer": 6}]
SCRIPT = {  # (question id, thought) -> what the "model" writes
    ("1", "pot"): "ans = 2 + 2", ("1", "eot"): "% x apples\nx = 2 + 3\nans = x", ("1", "cot"): "2 + 2 = 4. The answer is 4.",
    ("2", "pot"): "ans = (", ("2", "eot"): "x = 6\nans = x", ("2", "cot"): "The answer is 7.",
}


class ScriptedDecoder:
    """Writes SCRIPT's rationales; records what it was asked to decode."""

    prompting = {"scripted": 1}

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def prompt(self, question: str, thought: str) -> tuple[str, str]:
        qid = next(q["id"] for q in QUESTIONS if q["question"] == question)
        return qid, thought

    def plan(self, prompts: list) -> list[Batch]:
        return [Batch(list(range(s, min(s + 2, len(prompts)))), 2, 0) for s in range(0, len(prompts), 2)]

    def decode(self, prompts: list, batches: list | None = None):
        for batch in self.plan(prompts):
            self.asked += [prompts[i] for i in batch.indices]
            yield batch.indices, [[SCRIPT[prompts[i]]] for i in batch.indices]


def test_pipeline_checks_each_thought_and_resumes(tmp_path: Path) -> None:
    data, out = _write(tmp_path / "qs.jsonl", QUESTIONS), tmp_path / "run"
    kwargs = dict(thoughts="pot,eot,cot", vote=True, workers=1, show_progress=False)
    report = evaluate_model("scripted", str(data), out, decoder=ScriptedDecoder(), **kwargs)
    assert report["datasets"]["qs"]["accuracy"] == {
        "pot": 0.5, "eot": 0.5, "cot": 0.5, "fallback": 1.0, "vote": 1.0, "oracle": 1.0}  # q2: tie 6 (eot) vs 7 (cot)
    preds = _read(out / "predictions.jsonl")
    assert len(preds) == 6 and {(p["thought"], p["status"]) for p in preds if p["id"] == "2"} == {
        ("pot", "syntax"), ("eot", "ok"), ("cot", "ok")}
    # A killed run: two full lines and a torn one. The rerun decodes only what is missing.
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:2]) + lines[2][:20])
    again = ScriptedDecoder()
    assert evaluate_model("scripted", str(data), out, decoder=again, **kwargs) == report
    assert len(again.asked) == 4 and len(_read(out / "predictions.jsonl")) == 6
    for name in ("items.jsonl", "report.json", "report.md", "chart.png"):
        assert (out / name).stat().st_size > 0


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student directory as `distill train` saves it: a tiny random T5, a file-less byte tokenizer, its cues."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    from distill.students import StudentSettings

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student")
    tok = ByT5Tokenizer()
    cfg = T5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    StudentSettings(kind="seq2seq", max_source_len=128, max_target_len=8).save(path)
    return path


def test_cli_decodes_a_student_and_guards_its_output(tmp_path: Path, tiny_student: Path) -> None:
    data, data2, out = _write(tmp_path / "qs.jsonl", QUESTIONS), _write(tmp_path / "qs2.jsonl", QUESTIONS[:1]), tmp_path / "ev"
    args = ["eval", "--model", str(tiny_student), "--data", f"{data},{data2}", "--thoughts", "cot,eot",
            "--max-new-tokens", "6", "--vote", "-o", str(out), "--workers", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = _read(out / "items.jsonl")
    assert len(rows) == 3 and set(rows[0]["thoughts"]) == {"cot", "eot"}
    assert set(json.loads((out / "report.json").read_text())["datasets"]) == {"qs", "qs2", "overall"}
    assert all(r["status"] for r in _read(out / "predictions.jsonl"))
    assert "overall" in res.output
    res = CliRunner().invoke(main, [*args[:6], "cot", *args[7:]])
    assert res.exit_code == 2 and "another config" in res.output
    assert CliRunner().invoke(main, [*args[:6], "cot", *args[7:], "--overwrite"]).exit_code == 0
    rescored = tmp_path / "re"
    res = CliRunner().invoke(main, ["eval", "--predictions", str(out / "predictions.jsonl"), "-o", str(rescored)])
    assert res.exit_code == 0, res.output
    assert json.loads((rescored / "report.json").read_text())["thoughts"] == ["cot"]


def test_evaluate_metric_module_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluate

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(str(ROOT / "metrics" / "distill_accuracy"))
    result = metric.compute(predictions=["The answer is 4.", "3.14159", "no idea", "50%"],
                            references=["#### 4", "3.1416", "7", "0.5"])
    assert result == {"accuracy": 0.75, "answered": 0.75, "scored": 4}
