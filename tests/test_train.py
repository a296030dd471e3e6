"""`distill train` on tiny students built from configs (random weights, CPU, seconds)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from distill.cli import main
from distill.cues import student_input
from distill.records import InputError
from distill.students import load_student, pretrained_tokenizer
from distill.train import load_config, train
from distill.train.config import TrainConfig
from distill.train.data import IGNORE, Collator, load_splits, plan_batches, tokenize
from distill.train.loop import loss_sum
from distill.train.tiny import default_tokenizer, tiny_causal
from distill.students import StudentSettings

CUES = {"cot": "Q: {question}\nThink.\n", "pot": "Q: {question}\nCode.\n", "eot": "Q: {question}\nEquations.\n"}


def _rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        question = f"What is {a} plus {b}?"
        rows.append({"id": f"{seed}-{i}", "question_id": str(i), "question": question, "answer": str(a + b),
                     "thought": "cot", "input": student_input(question, "cot", CUES),
                     "target": f"{a} + {b} = {a + b}. The answer is {a + b}.", "teacher": "test"})
    return rows


@pytest.fixture(scope="module")
def mtd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MTD dir as `distill mix` writes it: a saved DatasetDict plus mix.json."""
    from datasets import Dataset, DatasetDict

    path = tmp_path_factory.mktemp("mtd")
    DatasetDict(train=Dataset.from_list(_rows(64, 0)), validation=Dataset.from_list(_rows(12, 1))).save_to_disk(path)
    (path / "mix.json").write_text(json.dumps({"cues": CUES}))
    return path


def _config(tmp_path: Path, data: Path, student: str = "tiny-t5", **overrides: object) -> TrainConfig:
    values = {"student": student, "data": str(data), "output_dir": str(tmp_path / "run"), "lr": 3e-3,
              "batch_size": 16, "max_steps": 8, "log_every": 1, "save_every": 4, "warmup_ratio": 0.0,
              "trackers": "none", "tiny": {"d_model": 64, "layers": 2, "heads": 4}, **overrides}
    return load_config(None, values)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
@pytest.mark.parametrize("student", ["tiny-t5", "tiny-llama"])
def test_tiny_student_learns_and_loads(tmp_path: Path, mtd: Path, student: str) -> None:
    out = train(_config(tmp_path, mtd, student))
    losses = _losses(out)
    assert losses[8] < 0.8 * losses[1]
    for name in ("train_config.yaml", "distill_student.json", "metrics.jsonl", "loss.png", "config.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "step-8").is_dir() and (out / "checkpoints" / "step-4").is_dir()
    assert any("eval_loss" in line for line in (out / "metrics.jsonl").read_text().splitlines())
    model, tokenizer, settings = load_student(str(out))
    assert settings.kind == ("seq2seq" if student == "tiny-t5" else "causal")
    assert settings.cues == CUES  # taken from mix.json
    prompt = tokenizer("Q: What is 2 plus 3?\nThink.\n", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[-1] > 0


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])  # bfloat16: the fp32 master copies resume too
def test_resume_matches_uninterrupted(tmp_path: Path, mtd: Path, dtype: str) -> None:
    # Dropout on: the resumed run must also restore the RNG to draw the same masks.
    tiny = {"d_model": 64, "layers": 2, "heads": 4, "dropout": 0.1}
    full = train(_config(tmp_path / "a", mtd, max_steps=6, save_every=3, tiny=tiny, grad_accum=2, dtype=dtype))

    def crash(step: int, _: dict) -> None:
        if step == 5:
            raise KeyboardInterrupt  # as if killed after step 5, past the step-3 checkpoint

    config = _config(tmp_path / "b", mtd, max_steps=6, save_every=3, tiny=tiny, grad_accum=2, dtype=dtype)
    with pytest.raises(KeyboardInterrupt):
        train(config, on_step=crash)
    with pytest.raises(InputError, match="--resume"):
        train(config)
    resumed = train(config, resume=True)
    a, b = _losses(full), _losses(resumed)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]  # rows the crashed run wrote after step 3 were dropped
    for step in range(1, 7):
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step


@pytest.mark.slow
def test_bf16_weights_train_as_fp32_weights_do(tmp_path: Path, mtd: Path) -> None:
    """Full fine-tuning with bf16 weights (fp32 master copies in the optimizer) follows the fp32 run's
    losses to bf16's precision, and its saved student is bf16."""
    fp32 = _losses(train(_config(tmp_path / "fp32", mtd, lr=1e-3, max_steps=8)))
    out = train(_config(tmp_path / "bf16", mtd, lr=1e-3, max_steps=8, dtype="bfloat16"))
    bf16 = _losses(out)
    assert bf16[8] < 0.8 * bf16[1]
    for step in range(1, 9):
        assert bf16[step] == pytest.approx(fp32[step], rel=0.01), step
    model, _, _ = load_student(str(out))
    assert next(model.parameters()).dtype == torch.bfloat16
    state = torch.load(out / "checkpoints" / "step-4" / "optimizer.pt", weights_only=False)
    assert state["master_weights"] and all(m.dtype == torch.float32 for m in state["master_weights"])


def test_static_compile_refuses_packed_batches(tmp_path: Path, mtd: Path) -> None:
    config = _config(tmp_path, mtd, "tiny-llama", compile="static", length_buckets=[64, 128], packing=True)
    with pytest.raises(InputError, match="static needs padded length_buckets.*packing: false"):
        train(config)


def test_packing_a_t5_needs_t5_fused(tmp_path: Path, mtd: Path) -> None:
    """SDPA cannot keep a T5's packed examples apart: `packing: true` there is refused, not ignored."""
    with pytest.raises(InputError, match="key 'packing': T5 students pack on t5-fused attention.*attention sdpa"):
        train(_config(tmp_path, mtd, "tiny-t5", packing=True, attn_implementation="sdpa"))  # (auto: t5-fused on a GPU)


def test_lora_adapter_saves_loads_and_merges(tmp_path: Path, mtd: Path) -> None:
    from accelerate.utils import set_seed
    from peft import PeftModel

    config = _config(tmp_path, mtd, "tiny-llama", max_steps=3, lora={"enabled": True, "r": 4, "alpha": 8},
                     packing=True)
    out = train(config)
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged, tokenizer, _ = load_student(str(out))
    set_seed(config.seed)  # train() builds the tiny base from the same seed
    # as train() kept it: the frozen base is bf16 on a GPU (merging there rounds to bf16)
    base = tiny_causal(tokenizer, d_model=64, layers=2, heads=4).to(merged.dtype)
    adapted = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    ids = tokenizer(["Q: What is 4 plus 5?\nThink.\n"], return_tensors="pt")["input_ids"]
    set_seed(config.seed)
    untrained = tiny_causal(tokenizer, d_model=64, layers=2, heads=4).to(merged.dtype)
    tolerance = 1e-4 if merged.dtype == torch.float32 else 3e-2
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=tolerance, atol=tolerance)
        assert not torch.allclose(untrained(ids).logits, merged(ids).logits, atol=1e-4)


def test_packing_keeps_examples_apart(mtd: Path) -> None:
    tokenizer = default_tokenizer()
    settings = StudentSettings(kind="causal", cues=CUES)
    examples = tokenize(load_splits(mtd).train[:6], tokenizer, settings)
    assert all(len(e["ids"]) == len(e["labels"]) for e in examples)
    torch.manual_seed(0)
    model = tiny_causal(tokenizer, d_model=64, layers=2).eval()
    padded = Collator("causal", tokenizer.pad_token_id)(examples)
    packed = Collator("causal", tokenizer.pad_token_id, packing=True)(examples)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        torch.testing.assert_close(loss_sum(model, packed), loss_sum(model, padded), rtol=1e-4, atol=1e-3)


def test_packed_seq2seq_batches_carry_the_same_teacher_top_k() -> None:
    """kd on a packed T5 (auto on t5-fused): each target position keeps the teacher's top-k it has padded,
    the second example's too, and positions without the teacher's keep the one-hot."""
    examples = [{"src": [5, 6, 7], "tgt": [8, 9, 1], "kd_top": [[8, 3], [9, 4]], "kd_lp": [[-0.1, -2.0], [-0.2, -3.0]]},
                {"src": [5, 6], "tgt": [10, 11, 12, 1], "kd_top": [[10, 2], [11, 3], [12, 4]],
                 "kd_lp": [[-0.3, -1.5], [-0.4, -1.6], [-0.5, -1.7]]}]
    padded, packed = (Collator("seq2seq", 0, decoder_start_id=0, packing=p, topk=2)(examples) for p in (False, True))
    keep = padded["labels"] != IGNORE
    assert packed["labels"].shape == (1, 7) and torch.equal(packed["labels"][0], padded["labels"][keep])
    for key in ("kd_ids", "kd_lp"):
        torch.testing.assert_close(packed[key][0], padded[key][keep])
    assert packed["kd_ids"][0, 2].tolist() == [1, 0] and packed["kd_lp"][0, 2, 1] == float("-inf")  # EOS: one-hot


def test_resume_refuses_a_changed_batch_plan(tmp_path: Path, mtd: Path) -> None:
    """A checkpoint of packed batches does not resume padded (the saved position indexes another plan,
    e.g. after packing: auto's choice changed): one error naming the state file's field, nothing truncated."""
    def crash(step: int, _: dict) -> None:
        if step == 3:
            raise KeyboardInterrupt

    config = _config(tmp_path, mtd, "tiny-llama", max_steps=4, save_every=2, packing=True)
    with pytest.raises(KeyboardInterrupt):
        train(config, on_step=crash)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(InputError, match="trainer_state.json.*field 'packed'.*were packed.*set packing: true"):
        train(_config(tmp_path, mtd, "tiny-llama", max_steps=4, save_every=2, packing=False), resume=True)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics
    assert sorted(_losses(train(config, resume=True))) == [1, 2, 3, 4]


def test_labels_cover_only_the_target(mtd: Path) -> None:
    tokenizer = default_tokenizer()
    row = load_splits(mtd).train[0]
    (example,) = tokenize([row], tokenizer, StudentSettings(kind="causal", cues=CUES))
    targets = [t for t in example["labels"] if t != IGNORE]
    assert tokenizer.decode(targets) == row["target"] + tokenizer.eos_token
    (s2s,) = tokenize([row], tokenizer, StudentSettings(kind="seq2seq", cues=CUES, max_target_len=10))
    assert len(s2s["tgt"]) == 10 and s2s["tgt"][-1] == tokenizer.eos_token_id


def test_batch_plan_is_deterministic_grouped_and_within_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(40, 500) for _ in range(1000)]
    plan = plan_batches(lengths, batch_size=16, max_tokens=4096, seed=3, epoch=1)
    assert plan == plan_batches(lengths, batch_size=16, max_tokens=4096, seed=3, epoch=1)
    assert plan != plan_batches(lengths, batch_size=16, max_tokens=4096, seed=3, epoch=2)
    assert sorted(i for b in plan for i in b) == list(range(1000))
    assert all(len(b) * max(lengths[i] for i in b) <= 4096 for b in plan if len(b) > 1)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in plan)
    assert sum(lengths) / padded > 0.9  # grouping by length: little padding
    packed = plan_batches(lengths, batch_size=64, max_tokens=4096, packed=True)
    assert all(sum(lengths[i] for i in b) <= 4096 for b in packed if len(b) > 1)


def test_bad_config_names_the_key_and_file(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("student: tiny-t5\nlora:\n  rank: 8\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*'lora\.rank'"):
        load_config(recipe, {"data": "d", "output_dir": "o"})
    recipe.write_text("student: tiny-t5\nlr: fast\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*key 'lr': expected float"):
        load_config(recipe, {"data": "d", "output_dir": "o"})
    with pytest.raises(InputError, match="'scheduler'.*cosine"):
        load_config(None, {"student": "s", "data": "d", "output_dir": "o", "scheduler": "wavy"})
    recipe.write_text("student: tiny-t5\ncompile: static\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*key 'compile': static needs length_buckets"):
        load_config(recipe, {"data": "d", "output_dir": "o"})
    assert load_config(recipe, {"data": "d", "output_dir": "o", "length_buckets": [64, 128]}).compile == "static"
    with pytest.raises(InputError, match="key 'compile': true, false or static, got 'fast'"):
        load_config(None, {"student": "s", "data": "d", "output_dir": "o", "compile": "fast"})
    with pytest.raises(InputError, match=r"missing -o/--output \(or key 'output_dir' in the preset\)"):
        load_config(None, {"student": "s", "data": "d"})


def test_exponent_floats_without_a_dot_are_floats(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads `2e-5` as a string; configs and `--set` read it as YAML 1.2 does."""
    from distill.train.config import parse_set

    recipe = tmp_path / "lr.yaml"
    recipe.write_text("student: tiny-t5\nlr: 2e-5\n")
    config = load_config(recipe, {"data": "d", "output_dir": "o", **parse_set(["weight_decay=1E-2"])})
    assert (config.lr, config.weight_decay) == (2e-5, 0.01)
    assert parse_set(["student=1e5x", "max_steps=10"]) == {"student": "1e5x", "max_steps": 10}


def test_missing_model_or_tokenizer_is_a_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    with pytest.raises(InputError, match=r"^cannot load a model from '.*no-model': [^\n]*$"):
        load_student(str(empty))
    with pytest.raises(InputError, match=r"^cannot load a tokenizer from '.*no-model': [^\n]*$"):
        pretrained_tokenizer(str(empty))


def test_cli_trains_from_jsonl_and_reports_bad_keys(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"input": r["input"], "target": r["target"]}) + "\n" for r in _rows(24, 2)))
    out = tmp_path / "run"
    args = ["train", "--student", "tiny-t5", "--data", str(data), "-o", str(out), "--max-steps", "2",
            "--batch-size", "8", "--set", "tiny.d_model=32", "--set", "tiny.layers=1", "--set", "trackers=none"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert load_config(out / "train_config.yaml", {}).tiny.d_model == 32
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = CliRunner().invoke(main, [*args, "--overwrite", "--set", "lora.rnak=4"])
    assert bad.exit_code == 2 and "'lora.rnak'" in bad.output
    data.write_text('{"input": "x"}\n')
    broken = CliRunner().invoke(main, [*args, "--overwrite"])
    assert broken.exit_code == 2 and "train.jsonl:1: field 'target'" in broken.output


def test_tiny_student_trains_its_own_tokenizer(tmp_path: Path, mtd: Path) -> None:
    tiny = {"d_model": 64, "layers": 2, "heads": 4, "d_ff": 128, "vocab_size": 320}
    out = train(_config(tmp_path, mtd, tokenizer="train-bpe", max_steps=4, tiny=tiny))
    _, tokenizer, _ = load_student(str(out))
    assert len(tokenizer) <= 320
    assert len(tokenizer.tokenize(" plus")) == 1  # a merge learned from the data
    assert [t for t in tokenizer.tokenize("12 + 30") if t.isdigit()] == ["1", "2", "3", "0"]
    text = "Q: What is 12 plus 30?\nThink.\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    with pytest.raises(InputError, match="from scratch"):
        train(_config(tmp_path / "b", mtd, student="t5-small", tokenizer="train-bpe"))


def test_length_buckets_give_fixed_shapes() -> None:
    from distill.train.data import bucket_shape, plan_buckets

    rng = random.Random(0)
    examples = [{"src": [5] * rng.randint(3, 60), "tgt": [6] * rng.randint(2, 90)} for _ in range(200)]
    buckets, budget = [32, 64, 96], 512
    shapes = [bucket_shape(e, buckets) for e in examples]
    plan = plan_buckets(shapes, batch_size=64, max_tokens=budget, seed=3, epoch=1)
    assert plan == plan_buckets(shapes, batch_size=64, max_tokens=budget, seed=3, epoch=1)
    assert sorted(i for b in plan for i in b) == list(range(200))
    collate = Collator("seq2seq", 0, decoder_start_id=0, buckets=buckets, batch_size=64, max_tokens=budget)
    seen, empty = set(), 0
    for b in plan:
        batch = collate([examples[i] for i in b])
        (rows, src), (_, tgt) = batch["input_ids"].shape, batch["labels"].shape
        assert (src, tgt) in {(s, t) for s in buckets for t in buckets} and rows == budget // (src + tgt)
        assert int((batch["labels"] != IGNORE).sum()) == sum(len(examples[i]["tgt"]) for i in b)
        seen.add((rows, src, tgt))
        empty += rows - len(b)
    assert len(seen) <= len(buckets) ** 2
    # The buckets' remainders share batches: 2 empty rows in 200 (each bucket's own last batch: 11).
    assert empty <= 4


@pytest.mark.slow
@pytest.mark.parametrize("compile_mode", [True, "static"])
def test_compiled_blocks_bounded_and_match_eager(tmp_path: Path, mtd: Path, compile_mode: bool | str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.utils import counters

    import distill.train
    modes = []
    real = distill.train.compile_blocks
    monkeypatch.setattr(distill.train, "compile_blocks", lambda *a, **k: modes.append(k["dynamic"]) or real(*a, **k))

    torch._dynamo.reset()
    counters.clear()
    # padded buckets both ways (on a GPU auto would pack the eager run: other batches than static's)
    common = {"max_steps": 4, "save_every": 0, "max_tokens": 512, "length_buckets": [32, 64, 128], "packing": False}
    eager = _losses(train(_config(tmp_path / "eager", mtd, "tiny-llama", **common)))
    compiled = _losses(train(_config(tmp_path / "compiled", mtd, "tiny-llama", compile=compile_mode, **common)))
    assert compiled == pytest.approx(eager, rel=1e-4)
    # One block class, train and eval: a graph per (mode, shape) at most (static), far fewer with dynamic shapes.
    assert 1 <= counters["stats"]["unique_graphs"] <= 2 * 3
    assert modes == [compile_mode is True]


def test_an_empty_causal_prompt_keeps_labels_shifted() -> None:
    """With no prompt token (ByT5 adds no BOS) the first target token has no position to be predicted
    from: the example starts with BOS, or EOS where the tokenizer has none, and its labels stay ids shifted."""
    from distill.cues import load_cues

    settings = StudentSettings(kind="causal", cues=load_cues())
    empty, plain = tokenize([{"input": "", "target": "ab"}, {"input": "q", "target": "ab"}], default_tokenizer(), settings)
    for example in (empty, plain):
        ids, labels = example["ids"], example["labels"]
        assert len(ids) == len(labels) and labels[-1] == IGNORE
        assert [t for t in labels if t != IGNORE] == ids[1:]
    assert empty["ids"][0] == default_tokenizer().eos_token_id


def test_gkd_refuses_buckets_under_a_token_budget(tmp_path: Path, mtd: Path) -> None:
    with pytest.raises(InputError, match="key 'length_buckets': not with --objective gkd and max_tokens"):
        _config(tmp_path, mtd, objective="gkd", teacher="hf:x", length_buckets=[64, 128], max_tokens=4096)


def test_every_process_runs_as_many_validation_forwards(tmp_path: Path, mtd: Path) -> None:
    """FSDP gathers parameters in every forward and DDP syncs buffers in the first: a process with fewer
    validation batches than another would hang them; the short one repeats a batch that adds no loss."""
    from types import SimpleNamespace

    from distill.train import _batches, _student

    splits = load_splits(str(mtd))
    size = next(n for n in range(2, 20) if -(-len(splits.validation) // n) % 2)  # an odd number of batches
    config = _config(tmp_path, mtd, batch_size=size)
    tokenizer, model, settings = _student(config, splits, None, False)
    counts = []
    for rank in range(2):
        accelerator = SimpleNamespace(process_index=rank, num_processes=2)
        _, _, batches = _batches(config, splits, tokenizer, model, settings, accelerator, False)
        counts.append(len(batches))
        targets = [int((b["labels"] != IGNORE).sum()) for b in batches]
        assert all(targets[:-1])
    total = -(-len(splits.validation) // size)
    assert counts == [-(-total // 2)] * 2
    assert targets[-1] == 0  # rank 1's extra batch, which adds nothing to the summed loss
    with torch.no_grad():
        assert loss_sum(model.eval(), batches[-1]).item() == 0.0
