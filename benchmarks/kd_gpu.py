"""Distillation throughput on one GPU: on-policy gkd steps and offline kd against SFT, random weights.

    python benchmarks/kd_gpu.py            # H200: ~6 minutes (trl importable), writes benchmarks/results/kd_gpu.md
    python benchmarks/kd_gpu.py --smoke    # CPU: tiny shapes, 2 steps, checks that nothing crashes

Shapes: teacher LLaMA-2-7B (32 layers, d 4096, ff 11008, 32 heads, vocab 32,000; bf16, frozen), student
1.3B-shape LLaMA (24 layers, d 2048, ff 5504, 16 heads, vocab 32,000; fp32 weights, bf16 autocast,
full fine-tune, AdamW). Prompts: 64-192 random tokens; 256 new tokens per on-policy sample.

gkd, ours:     `distill.train.gkd.OnPolicy`: the student samples with `distill.train.sampling.StudentSampler`
               (a bf16 copy of the student, weights refreshed each step, decoded by evaluation's
               static-cache loop, its steps in CUDA graphs, captured in the warm-up step), the teacher
               and the student run the LM head on the target positions only, generalised JSD.
gkd, baseline: HF `generate` sampling (as TRL), then both models' full logits over every position
               (how TRL's GKDTrainer scores: `model(**inputs).logits` for the whole sequence), JSD on
               the completion mask.
gkd, trl:      `trl.experimental.gkd.GKDTrainer` (trl 1.16) itself on the same models, prompts, optimizer
               (the same AdamW object, lr 1e-6, constant), bf16 autocast, lmbda 1 (fully on-policy),
               beta 0.5, temperature 1, 256 new tokens (min_new_tokens too, as ours forces the length);
               its prompts come from a collator of ours (token ids, left-padded), its tokenizer is a
               word-level one built here. Each timed step is the one step of a fresh trainer on the same
               fresh weights (see `trl_gkd`: TRL's own update makes them NaN at these shapes), after one
               warm-up run; gradient checkpointing off (TRL's default is on, and then it
               samples without a KV cache). Skipped, with a note, when trl is not importable. Like our
               baseline, it samples from the fp32 student (generate runs outside the trainer's autocast).
kd vs sft:     the same student, micro-batches and optimizer; kd reads a random top-20 per target token.
Samples/s counts sampled sequences per second of whole optimizer steps (decoding + scoring + update).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill.train.data import IGNORE, Collator  # noqa: E402
from distill.train.gkd import OnPolicy, prompt_len  # noqa: E402
from distill.train.kd import generalized_jsd  # noqa: E402
from distill.train.loop import kd_loss, loss_sum, target_tokens  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kd_gpu.md"


@dataclass
class Shape:
    layers: int
    d_model: int
    d_ff: int
    heads: int
    vocab: int


FULL = {"teacher": Shape(32, 4096, 11008, 32, 32000), "student": Shape(24, 2048, 5504, 16, 32000)}
SMOKE = {"teacher": Shape(2, 64, 128, 4, 512), "student": Shape(1, 32, 64, 2, 512)}


def build(shape: Shape, dtype: torch.dtype, device: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
                         max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def examples(n: int, vocab: int, new: int, seed: int) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(64, 192) if new > 16 else rng.randint(4, 8))]
        target = [rng.randrange(3, vocab) for _ in range(new)]
        out.append({"ids": prompt + target, "labels": [IGNORE] * (len(prompt) - 1) + target + [IGNORE]})
    return out


def word_tokenizer(vocab: int) -> Any:
    """A tokenizer over the ids as words (t3 ... t{vocab-1}), pad 0, BOS 1, EOS 2: TRL wants a processing class."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, vocab)}}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(words, unk_token="t3")), pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>", unk_token="t3")


def trl_gkd(student: Any, teacher: Any, data: list[dict[str, list[int]]], batch: int, new: int, beta: float,
            device: str, runs: int) -> float:
    """Seconds per step of trl's GKDTrainer: `runs` one-step trainings, each from the same fresh student
    weights and a new AdamW (lr 1e-6); the first is a warm-up, the mean of the others is returned.

    One step per run because at these shapes TRL's first update leaves non-finite weights (measured on
    the H200, 2026-12-02: loss 0.237, then NaN weights before its second sampling, whose
    `torch.multinomial` asserts), so a second step of one run measures nothing valid."""
    import tempfile

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        def left(rows: list[list[int]], value: int) -> torch.Tensor:
            width = max(map(len, rows))
            return torch.tensor([[value] * (width - len(r)) + r for r in rows])

        prompts = [f["prompt"] for f in features]
        full = [f["prompt"] + f["completion"] for f in features]
        # lmbda 1: the trainer replaces input_ids, attention_mask and labels by the student's samples; the
        # data's labels still set its loss normaliser (num_items_in_batch: the completion tokens, as ours).
        return {"prompts": left(prompts, 0), "prompt_attention_mask": left([[1] * len(p) for p in prompts], 0),
                "input_ids": left(full, 0), "attention_mask": left([[1] * len(f) for f in full], 0),
                "labels": left([[IGNORE] * len(f["prompt"]) + f["completion"] for f in features], IGNORE)}

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            sync(device)
            self.began = time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            sync(device)
            self.seconds.append(time.perf_counter() - self.began)

    fresh = {k: v.detach().clone() for k, v in student.state_dict().items()}
    clock = Clock()
    for run in range(runs):
        student.load_state_dict(fresh)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-6, fused=device == "cuda" or None)
        part = data[run * batch:(run + 1) * batch]
        split = [prompt_len(e) for e in part]
        rows = {"prompt": [e["ids"][:n] for e, n in zip(part, split)],
                "completion": [e["ids"][n:] for e, n in zip(part, split)]}
        with tempfile.TemporaryDirectory() as out:
            args = GKDConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=1,
                             learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0,
                             lmbda=1.0, beta=beta, temperature=1.0, max_new_tokens=new, bf16=device == "cuda",
                             use_cpu=device == "cpu", report_to="none", save_strategy="no", logging_steps=10_000,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0,
                             # TRL's configs default to gradient checkpointing, and GKDTrainer then samples with
                             # use_cache=False (the whole sequence again for every new token); ours does neither.
                             gradient_checkpointing=False)
            trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, data_collator=collate,
                                 train_dataset=Dataset.from_dict(rows), processing_class=word_tokenizer(
                                     student.config.vocab_size), optimizers=(optimizer, None), callbacks=[clock])
            trainer.generation_config.min_new_tokens = new  # every sample `new` tokens long, as ours
            trainer.train()
        del trainer, optimizer
    timed = clock.seconds[1:]
    return sum(timed) / len(timed)


def full_logits_loss(teacher: Any, beta: float) -> Any:
    """The baseline's scoring: every position through both LM heads, then the completion mask."""
    def loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        logits = model(**inputs).logits
        with torch.no_grad():
            t = teacher(**inputs).logits
        keep = batch["labels"] != IGNORE
        return generalized_jsd(logits[keep], t[keep], beta)
    return loss


def timed_steps(model: Any, optimizer: Any, batches: list[dict[str, torch.Tensor]], loss: Any, device: str,
                prepare: Any = None) -> tuple[float, int]:
    """Seconds per step (after one warm-up step) and target tokens per step."""
    times, tokens = [], 0
    for i, batch in enumerate(batches):
        sync(device)
        start = time.perf_counter()
        if prepare is not None:
            batch = prepare(i)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16,
                            enabled=device == "cuda"):
            value = loss(model, batch)
        (value / max(target_tokens(batch), 1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
            tokens += target_tokens(batch)
    return sum(times) / len(times), tokens // len(times)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, 2 timed steps")
    parser.add_argument("--batch", type=int, default=32, help="prompts per on-policy step")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per row (after one warm-up)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave benchmarks/results alone")
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    shapes = SMOKE if args.smoke else FULL
    batch, new, steps = (4, 8, 2) if args.smoke else (args.batch, args.new_tokens, args.steps)
    torch.manual_seed(0)
    teacher = build(shapes["teacher"], torch.bfloat16 if device == "cuda" else torch.float32, device).eval()
    teacher.requires_grad_(False)
    student = build(shapes["student"], torch.float32, device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-6, fused=device == "cuda" or None)
    vocab = shapes["student"].vocab
    collate = Collator("causal", 0)
    data = examples(batch * (steps + 1), vocab, new, seed=0)
    micro = [data[i * batch:(i + 1) * batch] for i in range(steps + 1)]
    gkd = OnPolicy(teacher, "causal", beta=0.5, fraction=1.0, max_new_tokens=new, temperature=1.0, pad_id=0,
                   eos_id=2, seed=0, force_length=True, student=student, device=device)
    baseline = replace(gkd, static_loop=False)
    rows, speed = [], {}

    def report(rows: list[tuple[str, ...]], note: str) -> None:
        """Print the table (and write it, unless --smoke / --no-write): called before trl and after it."""
        gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
        table = ["| recipe | throughput | step | target tokens/step |", "|---|---|---|---|"]
        table += [f"| {' | '.join(r)} |" for r in rows]
        text = (f"# Distillation throughput ({gpu})\n\n`python benchmarks/kd_gpu.py{' --smoke' if args.smoke else ''}`: "
                f"teacher {shapes['teacher']}, student {shapes['student']}, {batch} prompts per step, {new} new tokens.\n\n"
                + "\n".join(table) + "\n\n" + note + "\n")
        print(text)
        if not args.smoke and not args.no_write:
            RESULTS.write_text(text)

    for name, policy, loss in (("gkd, baseline (generate, full logits)", baseline, full_logits_loss(teacher, 0.5)),
                               ("gkd, ours", gkd, gkd.loss)):
        seconds, tokens = timed_steps(student, optimizer, micro, loss, device,
                                      prepare=lambda i, policy=policy: collate(policy.rewrite(micro[i], i)))
        speed[name] = batch / seconds
        rows.append((name, f"{batch / seconds:,.2f} samples/s", f"{seconds:.2f} s/step", f"{tokens:,}"))
    # Offline kd vs SFT: the data's targets, a random top-20 teacher per target token.
    k = 20
    rng = random.Random(1)
    for e in data:
        n = sum(t != IGNORE for t in e["labels"])
        e["kd_top"] = [[rng.randrange(vocab) for _ in range(k)] for _ in range(n)]
        e["kd_lp"] = [sorted((-rng.random() * 5 - 0.1 for _ in range(k)), reverse=True) for _ in range(n)]
    with_topk = Collator("causal", 0, topk=k)
    kd_batches = [with_topk(m) for m in micro]
    sft_batches = [collate(m) for m in micro]
    sft_s, sft_tokens = timed_steps(student, optimizer, sft_batches, loss_sum, device)
    kd_s, kd_tokens = timed_steps(student, optimizer, kd_batches, kd_loss(0.1), device)
    rows.append(("sft", f"{sft_tokens / sft_s:,.0f} target tokens/s", f"{sft_s:.2f} s/step", f"{sft_tokens:,}"))
    rows.append(("kd (top-20, alpha 0.1)", f"{kd_tokens / kd_s:,.0f} target tokens/s ({kd_s / sft_s - 1:+.1%} time vs sft)",
                 f"{kd_s:.2f} s/step", f"{kd_tokens:,}"))
    finite = all(bool(torch.isfinite(p).all()) for p in student.parameters())
    print(f"student weights finite after the gkd, sft and kd rows: {finite}", flush=True)
    # trl last: a device-side assert inside it would end the CUDA context for every later row. It gets
    # a fresh student of the same shape (ours has trained a few steps) and its own optimizer.
    try:
        import trl  # noqa: F401
    except ImportError:
        note = "trl is not importable here: the gkd, trl row was not measured."
    else:
        del optimizer, student
        torch.manual_seed(1)
        student = build(shapes["student"], torch.float32, device)
        report(rows, note=f"(trl {trl.__version__} running)")
        seconds = trl_gkd(student, teacher, data, batch, new, 0.5, device, runs=steps + 1)
        speed["trl"] = batch / seconds
        rows.append((f"gkd, trl {trl.__version__} GKDTrainer", f"{batch / seconds:,.2f} samples/s",
                     f"{seconds:.2f} s/step", f"{batch * new:,}"))
        note = f"gkd, ours vs trl's GKDTrainer: {speed['gkd, ours'] / speed['trl']:.2f}x (the issue's bar: 3x)."
    report(rows, note)


if __name__ == "__main__":
    main()
