"""Training throughput on one GPU: the naive recipe against `distill train`'s, random weights of real shapes.

    python benchmarks/train_gpu.py            # H100: both shapes, ~5 minutes, writes benchmarks/results/train_gpu.md
    python benchmarks/train_gpu.py --smoke    # CPU: tiny shapes, 2 steps, checks that nothing crashes

Shapes: (a) CodeT5-large / CodeT5+ 770M (24+24 layers, d_model 1024, d_ff 4096, vocab 32,100), full
fine-tune; (b) LLaMA-2 7B (32 layers, d 4096, ff 11008, vocab 32,000), LoRA r16 on every linear layer.
Examples are ETD-like: 40-200 source tokens, 60-300 target tokens (uniform), random ids.

naive: random batches padded to the longest (16 for (a); 8 for (b) with gradient checkpointing),
       fp32 weights under bf16 autocast, torch.optim.AdamW defaults, the model's own loss.
ours:  the `distill train` pieces: micro-batches of fixed shapes under a token budget (`length_buckets`;
       packed rows without padding instead where flash-attn or torch's varlen attention runs (causal),
       or on t5-fused (T5: its Triton kernels keep packed examples apart)),
       compiled blocks (`compile: true`; eager when that fails or exceeds --compile-limit), bf16
       frozen base for LoRA, fused AdamW, loss on target positions only (the causal LM head only
       sees target positions).
Throughput counts real (non-pad) tokens only: source + target tokens per example.
"""
from __future__ import annotations

import argparse
import gc
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill.train import varlen  # noqa: E402
from distill.train.compile import block_lists, compile_blocks  # noqa: E402
from distill.train.data import IGNORE, Collator, bucket_shape, length, plan_batches, plan_buckets  # noqa: E402
from distill.train.config import LoraSettings, TrainConfig  # noqa: E402
from distill.train.loop import loss_sum, target_tokens, to_device  # noqa: E402
from distill.train.model import attention, packing, packs, set_attention, weights_dtype  # noqa: E402
from distill.train.optim import build_optimizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_gpu.md"
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}  # dense bf16 tensor-core peaks
Example = dict[str, list[int]]


@dataclass
class Shape:
    name: str
    kind: str  # seq2seq | causal
    layers: int
    d_model: int
    d_ff: int
    heads: int
    vocab: int
    lora_r: int = 0


@dataclass
class Result:
    shape: str
    recipe: str
    tokens_per_s: float
    mfu: float | None
    peak_gb: float
    step_s: float
    tokens_per_step: float
    note: str


def real_shapes() -> list[Shape]:
    return [Shape("a) CodeT5-large 738M, full", "seq2seq", 24, 1024, 4096, 16, 32100),
            Shape("b) LLaMA-2 7B, LoRA r16", "causal", 32, 4096, 11008, 32, 32000, lora_r=16)]


def smoke_shapes() -> list[Shape]:
    return [Shape("a) tiny T5, full", "seq2seq", 2, 64, 256, 4, 384),
            Shape("b) tiny Llama, LoRA r4", "causal", 2, 64, 256, 4, 384, lora_r=4)]


def instantiate(cls: Any, config: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """`cls(config)` on SDPA, built straight in `dtype` on `device` (no fp32 copy of a bf16 7B), no KV cache."""
    config._attn_implementation = "sdpa"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.use_cache = False
    return model


def build_model(shape: Shape, dtype: torch.dtype, device: torch.device, checkpointing: bool) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    if shape.kind == "seq2seq":
        config = T5Config(vocab_size=shape.vocab, d_model=shape.d_model, d_kv=shape.d_model // shape.heads,
                          d_ff=shape.d_ff, num_layers=shape.layers, num_decoder_layers=shape.layers,
                          num_heads=shape.heads, feed_forward_proj="relu", dropout_rate=0.1,
                          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
        cls = T5ForConditionalGeneration
    else:
        config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
                             num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                             num_key_value_heads=shape.heads, max_position_embeddings=4096, pad_token_id=0)
        cls = LlamaForCausalLM
    model = instantiate(cls, config, dtype, device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if shape.lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=shape.lora_r, lora_alpha=2 * shape.lora_r, lora_dropout=LORA_DROPOUT[0],
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    return model.train()


def synthetic(shape: Shape, n: int, seed: int = 0) -> list[Example]:
    """Tokenised examples in `distill.train.data` form (ids 3.. so that none is pad/eos)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        src = [rng.randrange(3, shape.vocab) for _ in range(rng.randint(40, 200))]
        tgt = [rng.randrange(3, shape.vocab) for _ in range(rng.randint(60, 300) - 1)] + [1]
        if shape.kind == "seq2seq":
            out.append({"src": src, "tgt": tgt})
        else:
            out.append({"ids": src + tgt, "labels": [IGNORE] * (len(src) - 1) + tgt + [IGNORE]})
    return out


def real_tokens(examples: list[Example]) -> int:
    return sum(len(e["ids"]) if "ids" in e else len(e["src"]) + len(e["tgt"]) for e in examples)


def model_flops(shape: Shape, examples: list[Example]) -> float:
    """Model FLOPs of one training step over real tokens (padding and recomputation excluded).

    Matmul FLOPs = 2 per multiply-accumulate. Full fine-tune: 6*N per token through the N weights
    it passes (forward 2N, backward 4N). LoRA: the frozen weights need only input gradients, so
    4*N_frozen + 6*N_lora. Attention scores and values: forward 4*d per (query, key) pair per
    layer, x3 with the backward; causal self-attention counts the pairs it attends (s(s+1)/2).
    """
    d, ff, L = shape.d_model, shape.d_ff, shape.layers
    if shape.kind == "seq2seq":
        enc, dec, head = L * (4 * d * d + 2 * d * ff), L * (8 * d * d + 2 * d * ff), d * shape.vocab
        total = 0.0
        for e in examples:
            s, t = len(e["src"]), len(e["tgt"])
            total += 6 * (enc * s + (dec + head) * t)
            total += 3 * 4 * d * L * (s * s + t * (t + 1) / 2 + s * t)
        return total
    frozen = L * (4 * d * d + 3 * d * ff)
    lora = L * shape.lora_r * (4 * 2 * d + 3 * (d + ff))  # A and B of q, k, v, o and gate, up, down
    total = 0.0
    for e in examples:
        s = len(e["ids"])
        n_target = sum(1 for x in e["labels"] if x != IGNORE)
        total += (4 * frozen + 6 * lora) * s + 4 * d * shape.vocab * n_target
        total += 3 * 4 * d * L * s * (s + 1) / 2
    return total


def naive_collate(shape: Shape, examples: list[Example]) -> dict[str, torch.Tensor]:
    """What a first script does: pad to the longest in the batch, the model computes its own loss."""
    def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
        width = max(map(len, seqs))
        return torch.tensor([s + [value] * (width - len(s)) for s in seqs])

    if shape.kind == "seq2seq":
        src = [e["src"] for e in examples]
        return {"input_ids": pad(src, 0), "attention_mask": pad([[1] * len(s) for s in src], 0),
                "labels": pad([e["tgt"] for e in examples], IGNORE)}
    ids = [e["ids"] for e in examples]
    # HF-style unshifted labels: the prompt masked, the model shifts internally.
    labels = [[IGNORE] + [x for x in e["labels"][:-1]] for e in examples]
    return {"input_ids": pad(ids, 0), "attention_mask": pad([[1] * len(s) for s in ids], 0), "labels": pad(labels, IGNORE)}


def time_steps(model: Any, optimizer: torch.optim.Optimizer, batches: list[list[Example]],
               step: Callable[[list[Example]], None], warmup: int, steps: int, device: torch.device) -> tuple[float, list[list[Example]]]:
    """Seconds for `steps` optimizer steps after `warmup` ones (batches cycled)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(batches[i % len(batches)])
    sync()
    timed = [batches[(warmup + i) % len(batches)] for i in range(steps)]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    sync()
    return time.perf_counter() - start, timed


def naive(shape: Shape, data: list[Example], device: torch.device, warmup: int, steps: int) -> tuple[float, list[list[Example]], str]:
    batch_size, checkpointing = (8, True) if shape.lora_r else (16, False)
    model = build_model(shape, torch.float32, device, checkpointing)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    rng = random.Random(1)
    order = data[:]
    rng.shuffle(order)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    autocast = device.type == "cuda"

    def step(examples: list[Example]) -> None:
        batch = {k: v.to(device) for k, v in naive_collate(shape, examples).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, timed = time_steps(model, optimizer, batches, step, warmup, steps, device)
    note = f"batch {batch_size}, padded to longest" + (", grad checkpointing" if checkpointing else "")
    return seconds, timed, note


STATIC = [False]  # --static: a compiled graph per batch shape (distill train compiles with dynamic shapes)
LORA_DROPOUT = [0.05]  # the students' presets (recipes/students/*-lora.yaml); --lora-dropout sets it
BUCKETS = {"seq2seq": [64, 128, 192, 256, 320], "causal": [128, 192, 256, 320, 384, 448, 512]}


def ours(shape: Shape, data: list[Example], device: torch.device, warmup: int, steps: int,
         max_tokens: int, compile_model: bool, pack: str, profile: Path | None = None,
         t5_attention: str = "auto", weights: str = "auto") -> tuple[float, list[list[Example]], str]:
    on_gpu = device.type == "cuda"
    # As `distill train` (`dtype: auto`, or `weights`): LoRA's frozen base in bf16 (adapters fp32); a full
    # fine-tune in fp32 under bf16 autocast, or bf16 weights whose fp32 master copies the optimizer keeps.
    recipe = TrainConfig(student=shape.name, lr=2e-5, dtype=weights, lora=LoraSettings(enabled=bool(shape.lora_r)),
                         packing={"auto": "auto", "yes": True, "no": False}[pack],
                         compile="static" if STATIC[0] and compile_model else compile_model, attn_implementation=t5_attention if shape.kind == "seq2seq" else "auto")
    dtype = weights_dtype(recipe, on_gpu)
    model = build_model(shape, dtype, device, checkpointing=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, recipe, fused=on_gpu)
    # The attention and packing `distill train` chooses for this student (distill.train.model): flash-attn
    # or varlen (causal), t5-fused (T5) on a GPU, packed there unless --pack no.
    chosen = attention(recipe, on_gpu, shape.kind)
    if chosen != "sdpa":
        set_attention(model, chosen)
    packed = packs(model, shape.kind, packing(recipe))
    buckets = [] if packed else BUCKETS[shape.kind]
    collate = Collator(shape.kind, 0, decoder_start_id=0, packing=packed, pad_to_multiple_of=8 if on_gpu else 1,
                       buckets=buckets, batch_size=4096, max_tokens=max_tokens)
    if buckets:
        plan = plan_buckets([bucket_shape(e, buckets) for e in data], batch_size=4096, max_tokens=max_tokens)
    else:
        plan = plan_batches([length(e) for e in data], batch_size=4096, max_tokens=max_tokens, packed=packed)
    batches = [[data[i] for i in b] for b in plan]
    compile_s = 0.0
    if compile_model:  # as `distill train` with `compile: true`
        shapes = len(buckets) ** (2 if shape.kind == "seq2seq" else 1) if buckets else 8
        compile_blocks(model, graph_bound=2 * len(block_lists(model)) * shapes * 2, dynamic=not STATIC[0])

    def step(examples: list[Example]) -> None:
        with phase("collate"):
            batch = collate(examples)
            n_targets = target_tokens(batch)  # on the host: no device sync
        with phase("to device"):
            batch = to_device(batch, device)
        with phase("forward"), torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            loss = loss_sum(model, batch) / n_targets
        with phase("backward"):
            loss.backward()
        with phase("optimizer"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    if compile_model:  # one step per batch shape of the run, so that no compile falls into the timed steps
        started = time.perf_counter()
        seen = {}
        for b in batches[:warmup + steps]:
            seen.setdefault(tuple(getattr(v, "shape", v) for v in collate(b).values()), b)
        for b in seen.values():
            step(b)
        if on_gpu:
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - started
    seconds, timed = time_steps(model, optimizer, batches, step, warmup, steps, device)
    if profile is not None and on_gpu:  # where a step's GPU time goes: the top kernels of two steps, also to `profile`
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        with profiler(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for b in batches[:2]:
                step(b)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=100)
        table += "\n" + idle_report(prof.events())
        print(table, file=sys.stderr)
        profile.write_text(table)
    names = {"flash_attention_2": "flash-attn varlen", varlen.NAME: "torch varlen FlashAttention"}
    route = (f"{names.get(chosen, 'SDPA block mask')}, packed" if packed else
             f"{'flash-attn' if chosen == 'flash_attention_2' else 'SDPA'}, length-grouped padding")
    t5_names = {"t5-flex": "FlexAttention (t5-flex)", "t5-fused": "fused Triton self-attention (t5-fused)"}
    if shape.kind == "seq2seq":
        route = f"{t5_names.get(chosen, 'SDPA')}, " + ("packed" if packed else f"padded to {len(buckets)} length buckets")
    note = f"token budget {max_tokens:,}, {route}, fused AdamW" + (f", LoRA dropout {LORA_DROPOUT[0]}" if shape.lora_r else "") + ((", bf16 base" if shape.lora_r else ", bf16 weights with fp32 master copies") if dtype == torch.bfloat16 else "")
    compiled = f", compiled blocks{', static shapes' if STATIC[0] else ''} (compile + first steps {compile_s:.0f} s)"
    return seconds, timed, note + (compiled if compile_model else "")


def phase(name: str) -> Any:
    """A named span of the step, for `idle_report`."""
    return torch.profiler.record_function(PHASE + name)


PHASE = "phase: "


def idle_report(events: Any, shortest_us: float = 20.0) -> str:
    """When the GPU waits for the host: its idle time between the first and last kernel, by the step phase and
    the innermost host op running in the middle of each gap (a device sync shows up as the op that waits)."""
    import bisect

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU
    # The phases' ranges also come back as device-side annotation events spanning their kernels: not kernels.
    kernels = sorted((e.time_range.start, e.time_range.end) for e in events
                     if e.device_type == cuda and not e.is_user_annotation and not e.name.startswith(PHASE))
    spans = {True: [], False: []}  # phases, ops: (start, end, name) by start
    for e in events:
        if e.device_type == cpu:
            spans[e.name.startswith(PHASE)].append((e.time_range.start, e.time_range.end, e.name.removeprefix(PHASE)))
    for v in spans.values():
        v.sort()
    starts = {k: [e[0] for e in v] for k, v in spans.items()}

    def innermost(is_phase: bool, t: float, default: str) -> str:
        i = bisect.bisect(starts[is_phase], t)
        return next((e[2] for e in reversed(spans[is_phase][max(0, i - 5000):i]) if e[1] >= t), default)

    by: dict[tuple[str, str], float] = {}
    busy_until, idle, span = kernels[0][1], 0.0, kernels[-1][1] - kernels[0][0]
    for start, end in kernels[1:]:
        if start - busy_until >= shortest_us:
            middle = (start + busy_until) / 2
            key = innermost(True, middle, "outside the step"), innermost(False, middle, "none")
            by[key] = by.get(key, 0.0) + start - busy_until
            idle += start - busy_until
        busy_until = max(busy_until, end)
    lines = [f"GPU idle {idle / 1e3:.1f} ms of {span / 1e3:.1f} ms ({idle / span:.1%}) in gaps of {shortest_us:.0f} us or more;"
             " by step phase and the host op in the gap's middle:"]
    lines += [f"  {ms / 1e3:8.1f} ms  {p_} / {op}" for (p_, op), ms in sorted(by.items(), key=lambda x: -x[1])[:15]]
    return "\n".join(lines)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure(shape: Shape, recipe: str, device: torch.device, peak_flops: float | None, run: Callable) -> Result:
    free(device)
    seconds, timed, note = run()
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    free(device)
    examples = [e for batch in timed for e in batch]
    tokens = real_tokens(examples)
    mfu = model_flops(shape, examples) / seconds / peak_flops if peak_flops else None
    return Result(shape.name, recipe, tokens / seconds, mfu, peak_gb, seconds / len(timed), tokens / len(timed), note)


class CompileTimeout(Exception):
    pass


def ours_with_fallback(shape: Shape, data: list[Example], device: torch.device, warmup: int, steps: int,
                       budget: int, compile_model: bool, pack: str, compile_limit: int, profile: Path | None = None,
                       t5_attention: str = "auto", weights: str = "auto") -> Callable:
    """Ours at the largest token budget that fits (3/4 of it on out-of-memory); compiled, or eager
    when the compiled run fails or takes more than `compile_limit` seconds, so one run always gives a table."""
    def attempt(tokens: int, compiled: bool) -> tuple[float, list[list[Example]], str]:
        while True:
            try:
                return ours(shape, data, device, warmup, steps, tokens, compiled, pack, profile, t5_attention, weights)
            except torch.cuda.OutOfMemoryError:
                if tokens <= 2048:
                    raise
                tokens = tokens * 3 // 4 // 512 * 512
                free(device)

    def run() -> tuple[float, list[list[Example]], str]:
        if compile_model:
            def timeout(*_: Any) -> None:
                raise CompileTimeout
            previous = signal.signal(signal.SIGALRM, timeout)
            signal.alarm(compile_limit)
            try:
                return attempt(budget, True)
            except Exception as exc:  # noqa: BLE001 - any failure of the compiled run falls back to eager
                reason = "over the time limit" if isinstance(exc, CompileTimeout) else f"{type(exc).__name__}: {exc}"
                print(f"{shape.name}: compiled run failed ({reason}); eager instead", file=sys.stderr)
                free(device)
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)
            seconds, timed, note = attempt(budget, False)
            return seconds, timed, note + " (compile failed: eager)"
        return attempt(budget, False)
    return run


def speedups(results: list[Result]) -> list[float | None]:
    base = {r.shape: r.tokens_per_s for r in results if r.recipe == "naive"}
    return [r.tokens_per_s / base[r.shape] if r.shape in base else None for r in results]


def rows(results: list[Result]) -> list[list[str]]:
    return [[r.shape, r.recipe, f"{r.tokens_per_s:,.0f}", f"{x:.2f}x" if x else "n/a", f"{r.mfu:.1%}" if r.mfu is not None else "n/a",
             f"{r.peak_gb:.1f}", f"{r.step_s:.3f}", f"{r.tokens_per_step:,.0f}", r.note]
            for r, x in zip(results, speedups(results))]


HEADER = ["shape", "recipe", "real tokens/s", "speed-up", "MFU", "peak mem (GiB)", "s/step", "real tokens/step", "setup"]
MFU_NOTE = ("MFU = model FLOPs of the timed steps over real tokens / time / peak. Model FLOPs: full fine-tune 6*N per "
            "token through the weights it passes (encoder weights for source tokens, decoder + LM head for target "
            "tokens); LoRA 4*N_frozen + 6*N_lora per token plus 4*d*V per target token (LM head); attention 3 x 4*d "
            "per attended (query, key) pair per layer (causal: s(s+1)/2 pairs). Padding, recomputation (gradient "
            "checkpointing) and the optimizer are not counted as useful work.")


def markdown(results: list[Result], title: str, peak: float | None, command: str) -> str:
    lines = [f"# {title}", "", f"`{command}`", "",
             f"bf16 dense peak used for MFU: {peak / 1e12:.1f} TFLOPS" if peak else "MFU: peak unknown for this device",
             "", "| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines + ["", MFU_NOTE, ""])


def rich_table(results: list[Result], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, caption=MFU_NOTE)
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="right" if 2 <= i <= 7 else "left")
    for row in rows(results):
        table.add_row(*row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 2 steps (CPU is fine)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (the naive recipe needs about 10 to warm up)")
    parser.add_argument("--only", choices=["a", "b"], help="one shape only")
    parser.add_argument("--profile", action="store_true",
                        help="print the top GPU kernels of two steps of ours (also written beside --out)")
    parser.add_argument("--budget-a", type=int, default=65536, help="ours: token budget per step, shape (a)")
    parser.add_argument("--budget-b", type=int, default=8192, help="ours: token budget per step, shape (b)")
    parser.add_argument("--pack", choices=["auto", "yes", "no"], default="auto",
                        help="ours: padding-free packing (auto: causal on flash-attn or torch varlen, T5 on t5-fused)")
    parser.add_argument("--eager", action="store_true", help="ours: no torch.compile of the blocks")
    parser.add_argument("--t5-attention", default="auto",
                        help="ours, shape (a): auto (distill train's choice: t5-fused on a GPU), t5-fused, sdpa or "
                             "t5-flex (FlexAttention, compiled only; raise --compile-limit); a comma list runs each")
    parser.add_argument("--dtype-a", default="auto",
                        help="ours, shape (a): weights dtype as `distill train`'s `dtype` (auto: float32 under bf16 "
                             "autocast; bfloat16: fp32 master copies in the optimizer); a comma list runs each")
    parser.add_argument("--static", action="store_true",
                        help="ours: compile the blocks for each batch shape (static shapes; more compiles)")
    parser.add_argument("--lora-dropout", type=float, default=LORA_DROPOUT[0], help="shape (b), both recipes")
    parser.add_argument("--compile-limit", type=int, default=300,
                        help="ours: seconds a compiled run may take (compile included) before eager is measured "
                             "instead; packed T5 on t5-fused took 23-159 s on an H200 (its tile timing: about 30 s a mask kind)")
    parser.add_argument("--buckets-a", default="", help="ours, shape (a): padded widths, e.g. 128,256,320 "
                        f"(fewer shapes to compile; default {','.join(map(str, BUCKETS['seq2seq']))})")
    parser.add_argument("--recipes", default="naive,ours", help="which recipes to run (a table without naive has no speed-up)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak of this GPU (default: from its name)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from rich.console import Console

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    LORA_DROPOUT[0] = args.lora_dropout
    STATIC[0] = args.static
    if args.buckets_a:
        BUCKETS["seq2seq"] = [int(w) for w in args.buckets_a.split(",")]
    if args.smoke:
        args.steps, args.warmup, args.budget_a, args.budget_b = 2, 1, 4096, 4096
    shapes = smoke_shapes() if args.smoke else real_shapes()
    if args.only:
        shapes = [s for s in shapes if s.name.startswith(args.only)]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = (args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)) * 1e12 or None
    torch.backends.cuda.matmul.allow_tf32 = True
    console = Console()
    results = []
    profile = args.out.with_name(args.out.stem + "_profile.txt") if args.profile else None
    for shape in shapes:
        data = synthetic(shape, 4096 if not args.smoke else 64)
        budget = args.budget_a if shape.kind == "seq2seq" else args.budget_b
        weights = args.dtype_a.split(",") if shape.kind == "seq2seq" else ["auto"]
        t5_attentions = args.t5_attention.split(",") if shape.kind == "seq2seq" else ["auto"]
        runs = [("naive", lambda: naive(shape, data, device, args.warmup, args.steps))]
        runs += [(", ".join(["ours"] + [w] * (len(weights) > 1) + [a] * (len(t5_attentions) > 1)),
                  ours_with_fallback(shape, data, device, args.warmup, args.steps, budget, not args.eager, args.pack,
                                     args.compile_limit, profile, a, w)) for w in weights for a in t5_attentions]
        for recipe, run in runs:
            if recipe.split(",")[0] not in args.recipes.split(","):
                continue
            started = time.perf_counter()
            results.append(measure(shape, recipe, device, peak, run))
            console.print(f"{shape.name} {recipe}: {results[-1].tokens_per_s:,.0f} tokens/s "
                          f"({time.perf_counter() - started:.0f} s)")
    title = f"distill train throughput, naive vs ours: {name}" + (" (smoke: tiny shapes)" if args.smoke else "")
    console.print(rich_table(results, title))
    if not args.smoke:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(results, title, peak, "python " + " ".join(sys.argv)))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
