"""What single layers cost, forward + backward, one GPU: the ceilings behind benchmarks/train_gpu.py.

    python benchmarks/layer_costs.py            # GPU: both parts, about 3 minutes
    python benchmarks/layer_costs.py --smoke    # CPU: tiny shapes, eager, checks that nothing crashes

lora: 4 LLaMA-2 7B decoder layers (bf16, frozen, 16 x 512 tokens, compiled blocks as `distill train`):
      the frozen base alone (the ceiling of shape (b)), then LoRA r16 on every linear layer with peft's
      dropout 0.05 (train_gpu's recipe) and without dropout. TFLOP/s counts 4*N per token (frozen
      weights) plus causal attention, as train_gpu's MFU does.
t5:   one T5 self-attention call with a learned relative-position bias (CodeT5-large heads, 96 x 192
      tokens, padding masked), by every route torch offers: HF's eager math, compiled math (what
      compiled blocks run now), SDPA (default and memory-efficient kernels, the bias as a float mask),
      FlexAttention with the bias as a score modifier (t5-flex), distill's own Triton kernels (t5-fused),
      and without dropout where a route has it.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_gpu import instantiate  # noqa: E402

from distill.train.compile import compile_blocks  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "layer_costs.md"


def seconds(fn: Callable[[], None], device: torch.device, warmup: int = 3, n: int = 8) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - start) / n


def kernel_table(step: Callable[[], None], device: torch.device, rows: int = 25) -> str:
    """The GPU kernels of two steps, by total time (`--profile`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=90)


def lora_layers(device: torch.device, smoke: bool, profile: TextIO | None = None) -> list[tuple[str, str]]:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaModel

    layers, rows, width, d, ff, heads = (2, 2, 32, 64, 128, 4) if smoke else (4, 16, 512, 4096, 11008, 32)
    out = []
    for name, dropout in (("frozen base, no LoRA", None), ("LoRA r16, dropout 0.05", 0.05), ("LoRA r16, no dropout", 0.0)):
        config = LlamaConfig(vocab_size=32000, hidden_size=d, intermediate_size=ff, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096)
        model = instantiate(LlamaModel, config, torch.bfloat16, device)
        model.requires_grad_(False)
        if dropout is not None:
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear"))
        model.train()
        if device.type == "cuda":
            compile_blocks(model, 64)
        x = torch.randn(rows, width, d, device=device, dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn_like(x)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                hidden = model(inputs_embeds=x).last_hidden_state
            hidden.backward(grad)

        s = seconds(step, device)
        if profile is not None:
            profile.write(f"## lora: {name}\n{kernel_table(step, device)}\n")
        flops = rows * width * layers * (4 * (4 * d * d + 3 * d * ff) + 12 * d * (width + 1) / 2)
        out.append((f"lora: {name}", f"{s / layers * 1e3:.2f} ms a layer, {flops / s / 1e12:.0f} TFLOP/s"))
        del model, x, grad
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def t5_attention(device: torch.device, smoke: bool, profile: TextIO | None = None) -> list[tuple[str, str]]:
    import torch.nn.functional as F

    rows, heads, width, dim = (4, 2, 16, 8) if smoke else (96, 16, 192, 64)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(rows, heads, width, dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, heads, width, width, device=device, requires_grad=True)
    keep = torch.arange(width, device=device)[None] < torch.randint(width // 2, width + 1, (rows,), device=device)[:, None]
    mask = torch.where(keep, 0.0, torch.finfo(torch.float32).min)[:, None, None, :]
    grad = torch.randn_like(q)

    def math(p: float) -> torch.Tensor:  # HF's eager T5 attention
        w = torch.matmul(q, k.transpose(2, 3)) + (bias + mask).to(q.dtype)
        return torch.matmul(F.dropout(torch.softmax(w.float(), -1).to(q.dtype), p=p), v)

    def sdpa(p: float) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=(bias + mask).to(q.dtype), dropout_p=p, scale=1.0)

    compiled = torch.compile(math) if device.type == "cuda" else math
    routes: list[tuple[str, Callable[[], torch.Tensor]]] = [
        ("HF eager math, dropout 0.1", lambda: math(0.1)),
        ("compiled math (compiled blocks now), dropout 0.1", lambda: compiled(0.1)),
        ("compiled math, no dropout", lambda: compiled(0.0)),
        ("SDPA, default kernel choice, dropout 0.1", lambda: sdpa(0.1)),
    ]
    if device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def efficient(p: float) -> torch.Tensor:
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                return sdpa(p)

        block_mask = create_block_mask(lambda b, h, i, j: keep[b, j], rows, None, width, width, device=device)
        flex = torch.compile(lambda table: flex_attention(q, k, v, score_mod=lambda s, b, h, i, j: s + table[h, i, j],
                                                          block_mask=block_mask, scale=1.0))
        plain = torch.compile(lambda: flex_attention(q, k, v, block_mask=block_mask, scale=1.0))
        routes += [("SDPA memory-efficient kernel, dropout 0.1", lambda: efficient(0.1)),
                   ("SDPA memory-efficient kernel, no dropout", lambda: efficient(0.0)),
                   ("FlexAttention, bias as score_mod with its gradient (t5-flex)", lambda: flex(bias[0])),
                   ("FlexAttention, bias as score_mod, frozen bias", lambda: flex(bias[0].detach())),
                   ("FlexAttention, no bias (a floor)", plain)]
        from distill.train import t5_fused

        def fused(p: float) -> torch.Tensor:
            return t5_fused.attention(q, k, v, bias[0], keep, dropout=p).transpose(1, 2)

        routes += [("t5-fused (distill's Triton kernels), dropout 0.1", lambda: fused(0.1)),
                   ("t5-fused, no dropout", lambda: fused(0.0))]
    out = []
    for name, route in routes:
        try:
            out.append((f"t5: {name}", f"{seconds(lambda: route().backward(grad), device) * 1e3:.2f} ms"))
        except Exception as exc:  # noqa: BLE001 - a route torch refuses here is reported, not fatal
            out.append((f"t5: {name}", f"failed: {type(exc).__name__}: {str(exc)[:120]}"))
    if profile is not None and device.type == "cuda":  # after the timing: Triton has picked its tiles
        profile.write(f"## t5-fused, dropout 0.1\n\n{kernel_table(lambda: fused(0.1).backward(grad), device)}\n\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU")
    parser.add_argument("--only", choices=["lora", "t5"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, help="write each LoRA variant's and t5-fused's kernel table (two steps) here")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cpu" and not args.smoke:
        parser.error("the real shapes need a CUDA GPU (--smoke runs tiny ones on CPU)")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    with open(args.profile, "w") if args.profile else contextlib.nullcontext() as profile:
        if args.only in (None, "lora"):
            rows += lora_layers(device, args.smoke, profile)
        if args.only in (None, "t5"):
            rows += t5_attention(device, args.smoke, profile)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke)"
    title = f"Layer costs, forward + backward: {name}, torch {torch.__version__}"
    table = Table(title=title)
    table.add_column("what")
    table.add_column("time", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if not args.smoke:
        lines = [f"# {title}", "", f"`python {' '.join(sys.argv)}`", "", "| what | time |", "|---|---:|"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines + [f"| {a} | {b} |" for a, b in rows]) + "\n")


if __name__ == "__main__":
    main()
