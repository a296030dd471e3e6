"""Probe of one `GreedyLoop` decode step on the GPU: milliseconds per step (CUDA-graph replay, median
of 10) for each attention variant and cache fill, and the top kernels of one eager step (`--profile`).
Random weights of the real shapes; a prompt batch of `--batch` x `--length` tokens.

    python benchmarks/decode_step.py --shape 770m --batch 1304 --length 128 --profile kernel
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_gpu import SHAPES, build_model

from distill.evaluation.graphs import SEGMENT, GreedyLoop, cuda_graph
from distill.evaluation.steps import T5Step, attend, attend_one


def _batch_bias(q, k, v, mask, scale=None):
    """SDPA with the bias materialised per sequence (some fused kernels refuse a batch-broadcast one)."""
    return attend(q, k, v, mask.expand(q.shape[0], -1, -1, -1).contiguous(), scale)


ATTENTION = {"sdpa": attend, "one": attend_one, "sdpa-batch-bias": _batch_bias}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="770m")
    ap.add_argument("--batch", type=int, default=1304)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--variants", default="kernel,one/sdpa,sdpa/sdpa",
                    help="kernel (decode_attention's Triton kernel) or, T5, self/cross attention of the torch step "
                         "(LLaMA: any non-kernel name is SDPA); each timed at every segment's cache fill")
    ap.add_argument("--profile", default="", help="variant whose eager step's top kernels are printed")
    ap.add_argument("--sweep", action="store_true", help="time the kernel alone over launch shapes at the last fill, "
                    "print the best as DIM:ELEMENTS:WARPS (eval_gpu.py --kernel-tiles), then stop")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.shape, args.batch, args.length)
        return
    model, _ = build_model(args.shape, False, "cuda", torch.bfloat16)
    new = 256
    ends = list(range(SEGMENT, new + 1, SEGMENT))
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    ids = torch.randint(3, 30000, (args.batch, args.length), device="cuda")
    for name in args.variants.split(","):
        loop = GreedyLoop(model, max_new_tokens=new, pad_token_id=0, force_new_tokens=True, capture=cuda_graph,
                          fused=name == "kernel")
        if name != "kernel" and isinstance(loop.arch, T5Step):
            self_name, cross_name = name.split("/")
            loop.arch.self_attention, loop.arch.cross_attention = ATTENTION[self_name], ATTENTION[cross_name]
        st = loop._allocate(args.batch, args.length, new, 1)
        with torch.inference_mode():
            loop.arch.prefill(st, ids, torch.ones_like(ids))
        total = 0.0
        for end in ends:
            keys = loop.arch.keys(args.length, end - 1)
            with torch.inference_mode():
                st.steps.clear()
                st.n.fill_(end - 2)
                step = loop._step_fn(st, keys)
                ts = []
                for _ in range(13):
                    st.n.fill_(end - 2)
                    ev[0].record(); step(); ev[1].record(); torch.cuda.synchronize()
                    ts.append(ev[0].elapsed_time(ev[1]))
            ms = sorted(ts[3:])[5]
            total += ms * SEGMENT
            print(f"{args.shape} batch {args.batch} length {args.length} {name} keys {keys}: {ms:.2f} ms/step", flush=True)
        print(f"{name}: {total / 1000:.2f} s per batch of {new} steps (segments of {SEGMENT}); "
              f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
        if name == args.profile:
            _profile(loop, st, args.length, new)
        del loop, st
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sweep(shape: str, batch: int, length: int, new: int = 256) -> None:
    """decode_attention over each row's span at the last step of a batch (LLaMA: prompt and new tokens;
    T5: the new tokens with the bias, then the source), for tiles of 4-16k elements and 4 or 8 warps."""
    from triton.testing import do_bench

    from distill.evaluation import decode_attention as da

    _, cfg, _, _ = SHAPES[shape]
    heads = cfg.get("num_attention_heads") or cfg["num_heads"]
    dim = cfg.get("d_kv") or cfg["hidden_size"] // heads
    t5 = "d_kv" in cfg
    spans = [(0, new, True), (0, length, False)] if t5 else [(length // 8, length + new - 1, False)]  # (lo, hi, bias)
    q = torch.randn(batch, heads, 1, dim, device="cuda", dtype=torch.bfloat16)
    cache = [torch.randn(batch, heads, max(hi for _, hi, _ in spans) + 1, dim, device="cuda", dtype=torch.bfloat16)
             for _ in range(2)]
    table = torch.randn(heads, new + 1, device="cuda")
    results = []
    for elements in (4096, 8192, 16384):
        for warps in (4, 8):
            da.TILES[dim] = (elements, warps)
            us = 0.0
            for lo, hi, bias in spans:
                lo_t = torch.full((batch,), lo, device="cuda", dtype=torch.long)
                hi_t = torch.full((batch,), hi, device="cuda", dtype=torch.long)
                us += 1000 * do_bench(lambda: da.decode_attention(q, *cache, lo_t, hi_t, 1.0, table if bias else None))
            read = sum(batch * heads * (hi - lo) * dim * 2 * 2 for lo, hi, _ in spans)
            results.append((us, elements, warps))
            print(f"{shape} tile {elements} warps {warps}: {us:.0f} us, {read / us / 1e6:.2f} TB/s", flush=True)
    us, elements, warps = min(results)
    print(f"best {dim}:{elements}:{warps}")


def _profile(loop: GreedyLoop, st, length: int, new: int) -> None:
    """The top kernels of two eager steps at the last segment's fill."""
    from torch.profiler import ProfilerActivity, profile

    loop.capture = None
    st.steps.clear()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            st.n.fill_(new - 2)
            loop._step_fn(st, loop.arch.keys(length, new - 1))()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=90), flush=True)


if __name__ == "__main__":
    main()
