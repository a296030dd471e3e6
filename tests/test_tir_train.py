"""TIR examples in the mix and in training: the tir cue, and a loss that skips what the interpreter
wrote (```output blocks), for seq2seq and causal students, packed or not, in sft and kd alike."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.cues import load_cues, student_input
from distill.logprobs import TopK
from distill.mix import mix
from distill.records import Record, write_jsonl
from distill.students import StudentSettings
from distill.thoughts import get_thought
from distill.train import load_config, train
from distill.train.data import IGNORE, Collator, load_splits, target_count, tokenize
from distill.train.loop import kd_loss, loss_sum
from distill.train.tiny import default_tokenizer, tiny_causal, tiny_seq2seq
from distill.train.tokenizer import train_tokenizer
from solvers.tir import Turn, output_spans, render

CUES = {"cot": "Q: {question}\nThink.\n", "pot": "Q: {question}\nCode.\n", "eot": "Q: {question}\nEq.\n",
        "tir": "Q: {question}\nRun.\n"}
OUTPUTS = ["12", "3\n4", "  7 ", "", "NameError: name 'y' is not defined", "π ≈ 3.14159", "[1, 2, 3]\n{'a': 1}"]


def _trace(rng: random.Random) -> tuple[str, str]:
    """A question and a TIR trace of 1-3 cells whose outputs take awkward shapes."""
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    turns = [Turn(rng.choice(["Let me compute.\n", "", "We multiply first:\n"]), f"x = {a} * {b}\nprint(x)",
                  rng.choice([str(a * b), *OUTPUTS]))]
    for _ in range(rng.randint(0, 2)):
        turns.append(Turn(rng.choice(["Then\n", "Check it.\n\n"]), f"print(x + {b})", rng.choice(OUTPUTS)))
    turns.append(Turn(f"So the answer is \\boxed{{{a * b}}}."))
    return f"What is {a} times {b}?", render(turns).strip()


def _rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"input": student_input(q, "tir", CUES), "target": t} for q, t in (_trace(rng) for _ in range(n))]


def _plain_rows(n: int) -> list[dict[str, str]]:
    """CoT and PoT targets: no output block (a code fence alone is not one)."""
    rows = [{"input": student_input(f"What is {i} plus 3?", "cot", CUES), "target": f"{i} + 3 = {i + 3}. The answer is {i + 3}."}
            for i in range(n)]
    rows.append({"input": "Q: code\nCode.\n", "target": "```python\nans = 3\n```\nprint(ans)"})
    return rows


@pytest.fixture(scope="module", params=["byt5", "bpe"])
def tokenizer(request: pytest.FixtureRequest):
    """ByT5's bytes (no offset mapping: pieces) and a byte-level BPE trained on the fly (offsets)."""
    if request.param == "byt5":
        return default_tokenizer()
    rows = _rows(200, seed=1) + _plain_rows(20)
    return train_tokenizer((text for r in rows for text in (r["input"], r["target"])), vocab_size=600)


def _target_part(example: dict) -> tuple[list[int], list[int]]:
    """An example's target tokens and their labels (causal labels are shifted by one)."""
    if "tgt" in example:
        return example["tgt"], example.get("labels", example["tgt"])
    first = next(i for i, t in enumerate(example["labels"]) if t != IGNORE)
    return example["ids"][first + 1:], example["labels"][first:-1]


def _runs(tokens: list[int], labels: list[int]) -> list[list[int]]:
    """The maximal runs of masked target tokens."""
    runs, current = [], []
    for token, label in zip(tokens, labels):
        if label == IGNORE:
            current.append(token)
        elif current:
            runs, current = runs + [current], []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_masked_positions_are_the_output_spans_exactly(tokenizer, kind: str) -> None:
    rows = _rows(60)
    examples = tokenize(rows, tokenizer, StudentSettings(kind=kind, cues=CUES, max_source_len=512, max_target_len=1024))
    for row, example in zip(rows, examples):
        tokens, labels = _target_part(example)
        assert tokenizer.decode(tokens) == row["target"] + tokenizer.eos_token  # the decoder still reads the outputs
        spans = output_spans(row["target"])
        assert spans and [tokenizer.decode(run) for run in _runs(tokens, labels)] == [row["target"][a:b] for a, b in spans]
        learnt = [t for t, label in zip(tokens, labels) if label != IGNORE]
        assert [label for label in labels if label != IGNORE] == learnt  # unmasked labels are the tokens themselves
        writer = "".join(row["target"][a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [None]))
        assert tokenizer.decode(learnt) == writer + tokenizer.eos_token and "```output" in writer
        assert target_count(example) == len(learnt)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_examples_without_outputs_are_unchanged(tokenizer, kind: str) -> None:
    settings = StudentSettings(kind=kind, cues=CUES, max_source_len=512, max_target_len=24)  # cut: EOS replaces the tail
    plain = _plain_rows(8)
    eos = tokenizer.eos_token_id
    for row, example in zip(plain, tokenize(_rows(5) + plain, tokenizer, settings)[5:]):
        tgt = tokenizer(row["target"], add_special_tokens=False)["input_ids"][:23] + [eos]
        if kind == "seq2seq":
            assert example == {"src": tokenizer(row["input"], truncation=True, max_length=512)["input_ids"], "tgt": tgt}
        else:
            prompt = len(example["ids"]) - len(tgt)
            assert example["ids"][prompt:] == tgt and example["labels"] == [IGNORE] * (prompt - 1) + tgt + [IGNORE]


def test_truncated_trace_keeps_its_mask_and_ends_in_a_learnt_eos(tokenizer) -> None:
    row = _rows(1, seed=3)[0]
    full = tokenize([row], tokenizer, StudentSettings(kind="seq2seq", cues=CUES, max_target_len=4096))[0]
    n = next(i for i, t in enumerate(full["labels"]) if t == IGNORE) + 2  # the cut falls inside the first output
    (cut,) = tokenize([row], tokenizer, StudentSettings(kind="seq2seq", cues=CUES, max_target_len=n))
    assert cut["labels"] == full["labels"][:n - 1] + [tokenizer.eos_token_id] and len(cut["tgt"]) == n


def test_packed_and_padded_batches_mask_the_same_tokens() -> None:
    tokenizer = default_tokenizer()
    examples = tokenize(_rows(6) + _plain_rows(2), tokenizer, StudentSettings(kind="causal", cues=CUES))
    torch.manual_seed(0)
    model = tiny_causal(tokenizer, d_model=64, layers=2).eval()
    padded = Collator("causal", tokenizer.pad_token_id)(examples)
    packed = Collator("causal", tokenizer.pad_token_id, packing=True)(examples)
    learnt = sum(map(target_count, examples))
    assert int((packed["labels"] != IGNORE).sum()) == int((padded["labels"] != IGNORE).sum()) == learnt
    assert packed["labels"][0].tolist() == [t for e in examples for t in e["labels"]]
    assert learnt < sum(len(_target_part(e)[0]) for e in examples)  # the outputs are masked, in both layouts
    with torch.no_grad():
        torch.testing.assert_close(loss_sum(model, packed), loss_sum(model, padded), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_kd_skips_the_outputs_and_stays_aligned(kind: str) -> None:
    """The teacher's top-k lands on the learnt positions only, each at its own token (the second slot
    names the token's index in the target), and kd with a one-hot teacher is sft on the masked labels."""
    tokenizer = default_tokenizer()
    row = _rows(1, seed=5)[0]
    ids = tokenizer(row["target"], add_special_tokens=False)["input_ids"]
    top = np.stack([ids, [1000 + i for i in range(len(ids))]], 1)
    kd_row = row | {"kd": TopK(np.array(ids), top, np.log(np.array([[0.7, 0.2]] * len(ids))))}
    settings = StudentSettings(kind=kind, cues=CUES, max_target_len=4096)
    (example,) = tokenize([kd_row], tokenizer, settings)
    tokens, labels = _target_part(example)
    learnt_at = [i for i, label in enumerate(labels) if label != IGNORE][:-1]  # EOS: the data's token
    assert [t[1] for t in example["kd_top"]] == [1000 + i for i in learnt_at]
    batch = Collator(kind, tokenizer.pad_token_id, decoder_start_id=tokenizer.pad_token_id, topk=2,
                     packing=kind == "causal")([example])
    at = batch["labels"] != IGNORE
    assert batch["kd_ids"][at][:-1, 1].tolist() == [1000 + i for i in learnt_at]
    assert (batch["kd_ids"][at][:-1, 0] == batch["labels"][at][:-1]).all()

    one_hot = row | {"kd": TopK(np.array(ids), np.array(ids)[:, None], np.zeros((len(ids), 1)))}
    (example,) = tokenize([one_hot], tokenizer, settings)
    batch = Collator(kind, tokenizer.pad_token_id, decoder_start_id=tokenizer.pad_token_id, topk=1)([example])
    torch.manual_seed(0)
    model = (tiny_seq2seq if kind == "seq2seq" else tiny_causal)(tokenizer, d_model=32, layers=1, heads=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(kd_loss(0.0)(model, batch), loss_sum(model, batch), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- mix -> train
def _generated(n: int) -> list[Record]:
    rng = random.Random(7)
    records = []
    for i in range(n):
        question, trace = _trace(rng)
        answer = int(trace.rsplit("{", 1)[1].split("}")[0])
        records.append(Record(id=f"q{i}", question=question, answer=answer, source="test", thought="tir",
                              rationale=trace, prediction=answer, status="ok", correct=True, model="world:t"))
        records.append(Record(id=f"q{i}", question=question, answer=answer, source="test", thought="cot",
                              rationale=f"It is {answer}. The answer is {answer}.", prediction=answer, status="ok",
                              correct=True, model="world:t"))
    return records


@pytest.fixture(scope="module")
def tir_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tirmix")
    write_jsonl(tmp / "gen.jsonl", _generated(48))
    mix([tmp / "gen.jsonl"], tmp / "mtd", decontaminate=(), val_fraction=0.1)
    return tmp


def test_mix_gives_tir_examples_the_registry_cue(tir_mix: Path, tmp_path: Path) -> None:
    cue = get_thought("tir").cue
    assert "tir" not in _cue_set("etd") and load_cues()["tir"] == cue  # etd names no tir cue: the registry's
    rows = [json.loads(line) for line in (tir_mix / "mtd" / "train.jsonl").read_text().splitlines()]
    tir = [r for r in rows if r["thought"] == "tir"]
    assert tir and all(r["input"] == cue.replace("{question}", r["question"]) for r in tir)
    assert all(r["input"] == load_cues()["cot"].replace("{question}", r["question"]) for r in rows if r["thought"] == "cot")
    assert json.loads((tir_mix / "mtd" / "mix.json").read_text())["cues"]["tir"] == cue
    assert load_splits(tir_mix / "mtd").cues["tir"] == cue  # what the student is trained and evaluated with
    # A user's cue set that names tir is used as it is.
    cues = tmp_path / "cues.yaml"
    cues.write_text('mine:\n  tir: "Q: {question}\\nTIR:"\n')
    mix([tir_mix / "gen.jsonl"], tmp_path / "mtd", decontaminate=(), student_cues="mine", cues_file=str(cues))
    row = next(json.loads(line) for line in (tmp_path / "mtd" / "train.jsonl").open() if '"tir"' in line)
    assert row["input"] == f"Q: {row['question']}\nTIR:"


def _cue_set(name: str) -> dict[str, str]:
    import yaml

    from distill.cues import DEFAULT_CUES

    return yaml.safe_load(DEFAULT_CUES.read_text(encoding="utf-8"))[name]


@pytest.mark.slow
@pytest.mark.parametrize(("student", "packing"), [("tiny-t5", False), ("tiny-llama", True)])
def test_tiny_student_trains_on_a_tir_mix(tmp_path: Path, tir_mix: Path, student: str, packing: bool) -> None:
    config = load_config(None, {
        "student": student, "data": str(tir_mix / "mtd"), "output_dir": str(tmp_path / "run"), "lr": 3e-3,
        "batch_size": 16, "max_steps": 12, "log_every": 1, "save_every": 0, "warmup_ratio": 0.0, "trackers": "none",
        "packing": packing, "tokenizer": "train-bpe", "tiny": {"d_model": 64, "layers": 2, "heads": 4}})
    out = train(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sum(losses[s] for s in (10, 11, 12)) / 3 < 0.8 * losses[1]  # tiny-llama: 5.97 -> 4.40
    assert any("eval_loss" in r for r in rows)


def test_a_token_across_a_span_boundary_stays_learnt() -> None:
    """A BPE without pre-tokenisation merges across the span boundaries (e.g. `output` + `\\n`): such a
    token holds the writer's text and stays learnt; a token is masked exactly when it lies in a span."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rows = _rows(200, seed=2)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([r["target"] for r in rows], trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    examples = tokenize(rows, tokenizer, StudentSettings(kind="seq2seq", cues=CUES, max_source_len=512, max_target_len=4096))
    straddling = 0
    for row, example in zip(rows, examples):
        encoded = tokenizer(row["target"], add_special_tokens=False, return_offsets_mapping=True)
        assert example["tgt"] == encoded["input_ids"] + [tokenizer.eos_token_id]  # tokenised whole, as unmasked
        spans = output_spans(row["target"])
        for (s, e), label in zip(encoded["offset_mapping"], example["labels"]):
            assert (label == IGNORE) == any(a <= s and e <= b for a, b in spans)
            straddling += label != IGNORE and any(s < b and a < e for a, b in spans)
    assert straddling  # the case this test is about occurred
