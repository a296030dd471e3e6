"""Training on several GPUs of one host: N processes against 1 process in the same command, same per-GPU batch.

    python benchmarks/train_multigpu.py --gpus 2 --cases ddp   # 2 GPUs: adds its rows to benchmarks/results/train_multigpu.md
    python benchmarks/train_multigpu.py --gpus 2 --cases fsdp
    python benchmarks/train_multigpu.py --cpu-smoke            # CPU: 2 gloo processes, tiny shapes, a few steps

Cases (random weights of the real shapes, ETD-like synthetic examples as in benchmarks/train_gpu.py):
  ddp   CodeT5-large / CodeT5+ 770M shape (738M), full fine-tune. DistributedDataParallel with gradient
        buckets as views (`--bucket-mb`), all-reduce overlapped with the backward (DDP's hooks), static
        graph (`--no-static-graph` to compare), fp32 master weights under bf16 autocast, fused AdamW,
        `distill train`'s fixed-shape length buckets (SDPA; `distill train` itself packs a T5 on
        t5-fused now, not measured here); loss normalised by local tokens (no host sync in the step);
        compiled blocks on GPU.
  fsdp  LLaMA-2 7B shape, full fine-tune with the llama2-7b-full student recipe's optimizer settings
        (AdamW lr 2e-5, cosine, 4% warm-up, grad clip 1.0), bf16 compute over fp32 sharded master weights
        (FSDP2 `fully_shard` per decoder layer + root, `MixedPrecisionPolicy`), the recipe's 8,192-token
        budget and `packing: auto` (packed rows with flash-attn, else length buckets; `--pack`). Then a sharded checkpoint (torch.distributed.checkpoint) is saved,
        the run goes on `--resume-steps` steps, a fresh model and optimizer load the checkpoint and
        repeat those steps: the losses must match to 1e-4.
  zero3 The fsdp case under DeepSpeed ZeRO-3 (only when `deepspeed` is installed).

MFU = model FLOPs / time / (bf16 dense peak x processes). fsdp/zero3: 6 * N * real tokens, N = all
parameters (the issue's definition; attention scores not counted). ddp: benchmarks/train_gpu.py's
model FLOPs (encoder weights for source tokens, decoder + head for target tokens, attention
included), comparable with benchmarks/results/train_gpu.md. Padding and recomputation never count.

Each case runs under `torchrun --standalone`, once with 1 process and once with N; rank 0 writes a
JSON result that this launcher reads. The 7B checkpoint (~80 GB with the optimizer state) goes under
$TMPDIR and is removed after the check.
The worker (`--worker CASE`) also runs under any other launcher, e.g. two `torchrun --nnodes 2` launches.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from train_gpu import BUCKETS, PEAK_TFLOPS, Shape, build_model, model_flops, real_tokens, synthetic  # noqa: E402

from distill.train.data import Collator, bucket_shape, length, plan_batches, plan_buckets  # noqa: E402
from distill.train.distributed import before_process_group  # noqa: E402
from distill.train.loop import loss_sum, target_tokens, to_device  # noqa: E402

RESULTS = HERE / "results" / "train_multigpu.md"
# NVLink multicast stays off wherever these benchmarks start processes (see the device notes).
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
CASES = ("ddp", "fsdp", "zero3")


def shapes(smoke: bool) -> dict[str, Shape]:
    if smoke:
        return {"ddp": Shape("tiny T5, full", "seq2seq", 2, 64, 256, 4, 384),
                "fsdp": Shape("tiny Llama, full", "causal", 2, 64, 256, 4, 384)}
    return {"ddp": Shape("CodeT5-large 738M, full", "seq2seq", 24, 1024, 4096, 16, 32100),
            "fsdp": Shape("LLaMA-2 7B, full", "causal", 32, 4096, 11008, 32, 32000)}


@dataclass
class Outcome:
    """What rank 0 of one case x process count reports."""

    case: str
    shape: str
    world: int
    tokens_per_s: float = 0.0  # real tokens of all processes
    step_s: float = 0.0
    tokens_per_step: float = 0.0  # real tokens per process and step
    peak_gb: float = 0.0  # per process
    mfu: float | None = None
    losses: list[float] = field(default_factory=list)  # of every step (warm-up and timed), averaged over processes
    resume_diff: float | None = None  # largest |loss| difference of the resumed steps
    checkpoint: list[str] = field(default_factory=list)  # the sharded checkpoint's files (deleted after the check)
    checkpoint_gb: float = 0.0
    note: str = ""
    error: str = ""
    command: str = ""  # set by the launcher: the command that measured this row, and where
    machine: str = ""


# --- worker ----------------------------------------------------------------------------------

def setup(threads: int | None) -> tuple[int, int, torch.device]:
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    before_process_group()
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        dist.init_process_group("gloo")
    torch.backends.cuda.matmul.allow_tf32 = True
    return dist.get_rank(), dist.get_world_size(), device


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    tflops = override or next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)
    return tflops * 1e12 or None


def reduce_losses(losses: list[torch.Tensor], targets: list[int], device: torch.device) -> list[float]:
    """Per step: the loss of all processes' target tokens (one all-reduce at the end, not one a step)."""
    import torch.distributed as dist

    both = torch.stack([torch.stack(losses), torch.tensor(targets, dtype=torch.float32, device=device)])
    dist.all_reduce(both)
    return (both[0] / both[1].clamp(min=1)).tolist()


def timed_run(step: Any, batches: list[Any], warmup: int, device: torch.device) -> tuple[float, list[torch.Tensor]]:
    """Runs every batch through `step` (which returns the summed loss as a device tensor); seconds of
    the batches after `warmup`, measured between barriers."""
    import torch.distributed as dist

    losses = [step(b) for b in batches[:warmup]]
    if device.type == "cuda":
        torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    losses += [step(b) for b in batches[warmup:]]
    if device.type == "cuda":
        torch.cuda.synchronize()
    dist.barrier()
    return time.perf_counter() - start, losses


def batches(shape: Shape, args: argparse.Namespace, rank: int, world: int, count: int, budget: int,
            packed: bool, on_gpu: bool) -> list[tuple[dict[str, torch.Tensor], list[dict[str, list[int]]]]]:
    """This process's `count` micro-batches, collated as `distill train` does (packed rows, or fixed
    shapes from length buckets), each with its examples."""
    data = synthetic(shape, args.examples)
    buckets = [] if packed else BUCKETS[shape.kind]
    if packed:
        plan = plan_batches([length(e) for e in data], batch_size=4096, max_tokens=budget, packed=True)
    else:
        plan = plan_buckets([bucket_shape(e, buckets) for e in data], batch_size=4096, max_tokens=budget)
    collate = Collator(shape.kind, 0, decoder_start_id=0, packing=packed, pad_to_multiple_of=8 if on_gpu else 1,
                       buckets=buckets, batch_size=4096, max_tokens=budget)
    mine = plan[rank::world]  # every world-th batch of the plan, cycled
    chosen = [[data[i] for i in mine[k % len(mine)]] for k in range(count)]
    return [(collate(examples), examples) for examples in chosen]


def make_step(model: Any, optimizer: Any, scheduler: Any, device: torch.device, clip: float, targets: list[int], *,
              autocast: bool = False, engine: Any = None) -> Any:
    """One optimizer step on a micro-batch; returns its summed target loss (a device tensor: no host sync)."""
    def step(cpu_batch: dict[str, torch.Tensor]) -> torch.Tensor:
        n_target = target_tokens(cpu_batch)  # counted on the host copy
        targets.append(n_target)
        batch = to_device(cpu_batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_sum(engine or model, batch)
        scaled = loss / max(n_target, 1)
        if engine is not None:  # DeepSpeed: its own backward and step (clipping and schedule inside)
            engine.backward(scaled)
            engine.step()
        else:
            scaled.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach().float()
    return step


def use_packing(args: argparse.Namespace, on_gpu: bool) -> bool:
    """Packed rows where flash-attn keeps examples apart without dense masks; length buckets otherwise.
    (`distill train`'s `packing: auto` also packs on torch's varlen kernels; not measured here.)"""
    return args.pack == "yes" or (args.pack == "auto" and on_gpu and importlib.util.find_spec("flash_attn") is not None)


def layout(packed: bool, budget: int, model: Any) -> str:
    if not packed:
        return f"{len(BUCKETS['causal'])} length buckets under {budget:,} tokens/GPU (SDPA)"
    flash = getattr(model.config, "_attn_implementation", "") == "flash_attention_2"
    return f"packed rows of {budget:,} tokens/GPU ({'flash-attn varlen' if flash else 'SDPA, block mask'})"


def ddp_case(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> Outcome:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from distill.train.compile import block_lists, compile_blocks

    shape = shapes(args.cpu_smoke)["ddp"]
    on_gpu = device.type == "cuda"
    budget = args.tokens or 32768
    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = build_model(shape, torch.float32, device, checkpointing=False)
    torch.manual_seed(args.seed + 1 + rank)  # dropout differs per process, and is the same in every launch
    work = batches(shape, args, rank, world, args.warmup + args.steps, budget, False, on_gpu)
    compiled = args.compile and on_gpu
    if compiled:
        compile_blocks(model, graph_bound=2 * len(block_lists(model)) * len(BUCKETS[shape.kind]) ** 2 * 2)
    model = DDP(model, device_ids=[device.index] if on_gpu else None, gradient_as_bucket_view=True,
                static_graph=args.static_graph, bucket_cap_mb=args.bucket_mb)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, fused=on_gpu or None)
    targets: list[int] = []
    step = make_step(model, optimizer, None, device, 1.0, targets, autocast=on_gpu)
    seconds, losses = timed_run(step, [b for b, _ in work], args.warmup, device)
    timed = [e for _, examples in work[args.warmup:] for e in examples]
    note = (f"{len(BUCKETS[shape.kind])} length buckets under {budget:,} tokens/GPU, fp32 weights"
            + (" + bf16 autocast" if on_gpu else "") + f", gradient buckets of {args.bucket_mb} MB as views, "
            f"static graph {'on' if args.static_graph else 'off'}, {'fused ' if on_gpu else ''}AdamW"
            + (", compiled blocks" if compiled else ""))
    return finish("ddp", shape, device, world, seconds, real_tokens(timed), model_flops(shape, timed), args,
                  reduce_losses(losses, targets, device), note)


def finish(case: str, shape: Shape, device: torch.device, world: int, seconds: float, tokens: int, flops: float,
           args: argparse.Namespace, losses: list[float], note: str) -> Outcome:
    """This rank's timed tokens and model FLOPs summed over the processes, over the slowest one's time."""
    import torch.distributed as dist

    total = torch.tensor([tokens, flops], dtype=torch.float64, device=device)
    slowest = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    tokens_all, flops_all, seconds = float(total[0]), float(total[1]), float(slowest[0])
    peak = peak_flops(device, args.peak_tflops)
    mfu = flops_all / seconds / (peak * world) if peak else None
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return Outcome(case, shape.name, world, tokens_all / seconds, seconds / args.steps, tokens_all / world / args.steps,
                   peak_gb, mfu, losses, note=note)


def causal_settings(args: argparse.Namespace) -> tuple[Shape, Any, int, bool]:
    """The 7B shape, the llama2-7b-full student recipe (lr, schedule, warm-up, clipping, token budget),
    the token budget per GPU and whether to checkpoint activations."""
    from distill.train.config import load_config

    overrides = {"data": "synthetic", "output_dir": "unused"} | ({"lr": args.lr} if args.lr else {})
    recipe = load_config("llama2-7b-full", overrides)
    checkpointing = {"recipe": recipe.gradient_checkpointing, "on": True, "off": False}[args.checkpointing]
    return shapes(args.cpu_smoke)["fsdp"], recipe, args.tokens or recipe.max_tokens, checkpointing


def fsdp_model(shape: Shape, device: torch.device, seed: int, checkpointing: bool, flash: bool) -> Any:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    torch.manual_seed(seed)
    model = build_model(shape, torch.float32, device, checkpointing=checkpointing)
    if flash:
        model.set_attn_implementation("flash_attention_2")
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def fsdp_case(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> Outcome:
    import shutil

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from distill.train import _scheduler
    from distill.train.optim import build_optimizer

    shape, recipe, budget, checkpointing = causal_settings(args)
    on_gpu = device.type == "cuda"
    packed = use_packing(args, on_gpu)
    total_steps = args.warmup + args.steps + args.resume_steps
    work = batches(shape, args, rank, world, total_steps, budget, packed, on_gpu)

    def build() -> tuple[Any, Any, Any]:
        model = fsdp_model(shape, device, args.seed, checkpointing, flash=packed and on_gpu)
        optimizer = build_optimizer(model, recipe, fused=device.type == "cuda")
        return model, optimizer, _scheduler(optimizer, recipe, total_steps)

    model, optimizer, scheduler = build()
    targets: list[int] = []
    step = make_step(model, optimizer, scheduler, device, recipe.max_grad_norm, targets)
    timed = args.warmup + args.steps
    seconds, losses = timed_run(step, [b for b, _ in work[:timed]], args.warmup, device)
    tokens = sum(real_tokens(examples) for _, examples in work[args.warmup:timed])
    n_params = sum(p.numel() for p in model.parameters())  # a DTensor shard's numel is the whole tensor's
    outcome = finish("fsdp", shape, device, world, seconds, tokens, 6 * n_params * tokens, args, [], "")

    # Sharded checkpoint, then the next steps twice: straight on, and from the checkpoint in a fresh model.
    where = Path(args.checkpoint_dir) / "fsdp"
    if rank == 0:
        shutil.rmtree(where, ignore_errors=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(where))
    sched_state = scheduler.state_dict()
    after = [b for b, _ in work[timed:]]
    straight = [step(b) for b in after]
    del model, optimizer, scheduler, step, model_state, optim_state
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    model, optimizer, scheduler = build()
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(where))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(sched_state)
    resumed_targets: list[int] = []
    again = [make_step(model, optimizer, scheduler, device, recipe.max_grad_norm, resumed_targets)(b) for b in after]
    outcome.losses = reduce_losses(losses + straight, targets, device)
    resumed = reduce_losses(again, resumed_targets, device)
    outcome.resume_diff = max(abs(a - b) for a, b in zip(outcome.losses[-len(after):], resumed))
    if rank == 0:
        files = sorted(p for p in where.iterdir() if p.is_file())
        outcome.checkpoint = [p.name for p in files]
        outcome.checkpoint_gb = sum(p.stat().st_size for p in files) / 1e9
        shutil.rmtree(where, ignore_errors=True)  # a 7B checkpoint with its optimizer state is ~80 GB
    outcome.note = (f"{layout(packed, budget, model)}, bf16 params / fp32 reduce + master weights, "
                    f"AdamW lr {recipe.lr:g} cosine warm-up {recipe.warmup_ratio:.0%}, grad clip {recipe.max_grad_norm:g}"
                    + (", activation checkpointing" if checkpointing else "")
                    + f"; resume after step {timed}: max |loss diff| over {len(after)} steps "
                    f"{outcome.resume_diff:.2e} (checkpoint {outcome.checkpoint_gb:.2f} GB in {len(outcome.checkpoint)} files)")
    return outcome


def zero3_case(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> Outcome:
    import deepspeed

    from distill.train import _scheduler
    from distill.train.optim import build_optimizer

    shape, recipe, budget, checkpointing = causal_settings(args)
    packed = use_packing(args, True)
    work = batches(shape, args, rank, world, args.warmup + args.steps, budget, packed, True)
    torch.manual_seed(args.seed)
    model = build_model(shape, torch.float32, device, checkpointing=checkpointing)
    if packed:
        model.set_attn_implementation("flash_attention_2")
    n_params = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
              "gradient_clipping": recipe.max_grad_norm, "bf16": {"enabled": True},
              "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True}}
    optimizer = build_optimizer(model, recipe, fused=True)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config,
                                      lr_scheduler=_scheduler(optimizer, recipe, len(work)))
    targets: list[int] = []
    step = make_step(engine, None, None, device, 0.0, targets, engine=engine)
    seconds, losses = timed_run(step, [b for b, _ in work], args.warmup, device)
    tokens = sum(real_tokens(examples) for _, examples in work[args.warmup:])
    note = (f"DeepSpeed {deepspeed.__version__} ZeRO-3, bf16, {layout(packed, budget, model)}, "
            "the fsdp case's optimizer and schedule")
    return finish("zero3", shape, device, world, seconds, tokens, 6 * n_params * tokens, args,
                  reduce_losses(losses, targets, device), note)


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    rank, world, device = setup(args.threads)
    try:
        outcome = {"ddp": ddp_case, "fsdp": fsdp_case, "zero3": zero3_case}[args.worker](args, rank, world, device)
        if rank == 0 and args.result:
            Path(args.result).write_text(json.dumps(asdict(outcome)))
    finally:
        dist.destroy_process_group()
    # FSDP2's device meshes stay referenced from DTensor's caches and keep the default group, and its gloo
    # threads, alive past destroy_process_group; exiting with them running now and then aborts ("terminate
    # called without an active exception"). The result is written: end without the C++ teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --- launcher --------------------------------------------------------------------------------

def launch(case: str, world: int, args: argparse.Namespace, forward: list[str], scratch: Path) -> Outcome:
    """One case on `world` processes under torchrun; a failed run becomes a row with its error."""
    result = scratch / f"{case}-{world}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", __file__,
           "--worker", case, "--result", str(result), "--checkpoint-dir", str(scratch / f"ckpt-{world}"), *forward]
    env = {**os.environ, **NO_MULTICAST, "TOKENIZERS_PARALLELISM": "false"}
    if args.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.case_timeout)
        failed = "" if done.returncode == 0 and result.is_file() else (done.stdout + done.stderr)
    except subprocess.TimeoutExpired:
        failed = f"over --case-timeout {args.case_timeout} s"
    shape = shapes(args.cpu_smoke)["ddp" if case == "ddp" else "fsdp"].name
    print(f"{case} x{world}: {'failed' if failed else 'done'} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if failed:
        print(failed[-4000:], file=sys.stderr)
        reason = "out of memory" if "OutOfMemoryError" in failed or "out of memory" in failed else failed.strip().splitlines()[-1][:160]
        return Outcome(case, shape, world, error=reason)
    return Outcome(**json.loads(result.read_text()))


HEADER = ["case", "shape", "processes", "real tokens/s", "scaling vs 1", "MFU", "peak mem/GPU (GiB)", "s/step",
          "real tokens/step/GPU", "setup"]


def rows(outcomes: list[Outcome]) -> list[list[str]]:
    base = {o.case: o.tokens_per_s for o in outcomes if o.world == 1 and not o.error}
    out = []
    for o in outcomes:
        if o.error:
            out.append([o.case, o.shape, str(o.world), "-", "-", "-", "-", "-", "-", f"failed: {o.error}"])
            continue
        scaling = f"{o.tokens_per_s / base[o.case]:.2f}x" if o.case in base else "n/a (no 1-process row)"
        out.append([o.case, o.shape, str(o.world), f"{o.tokens_per_s:,.0f}", scaling,
                    f"{o.mfu:.1%}" if o.mfu is not None else "n/a", f"{o.peak_gb:.1f}", f"{o.step_s:.3f}",
                    f"{o.tokens_per_step:,.0f}", o.note])
    return out


def environment() -> str:
    import transformers

    if torch.cuda.is_available():
        where = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    else:
        where = f"CPU ({os.cpu_count()} cores)"
    return f"{where}; torch {torch.__version__}, transformers {transformers.__version__}"


MFU_NOTE = ("MFU = model FLOPs / time / (bf16 dense peak x processes). fsdp, zero3: 6 * N * real tokens, N = all "
            "parameters (attention scores not counted). ddp: benchmarks/train_gpu.py's model FLOPs (encoder weights "
            "for source tokens, decoder + LM head for target tokens, attention included), as in "
            "benchmarks/results/train_gpu.md. Padding and recomputation never count. Real tokens: source + target "
            "tokens of the examples, pad excluded.")


def markdown(outcomes: list[Outcome], title: str) -> str:
    """The table, then each command that measured rows of it (a case's 1- and N-process rows come from one)."""
    lines = [f"# {title}", "", "| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(outcomes)]
    lines += ["", MFU_NOTE, "", "Measured by:", ""]
    lines += [f"- `{command}` on {machine}" for command, machine in dict.fromkeys((o.command, o.machine) for o in outcomes)]
    return "\n".join(lines + [""])


def merge(store: Path, outcomes: list[Outcome]) -> list[Outcome]:
    """Rows kept in `store` (JSON beside the markdown) from earlier commands, those measured now replaced
    (by case and process count): cases can be measured by separate commands (the device allows 10
    minutes a command)."""
    earlier = [Outcome(**o) for o in json.loads(store.read_text())] if store.is_file() else []
    now = {(o.case, o.world) for o in outcomes}
    merged = [o for o in earlier if (o.case, o.world) not in now] + outcomes
    merged.sort(key=lambda o: (CASES.index(o.case), o.world))
    store.write_text(json.dumps([asdict(o) for o in merged], indent=1) + "\n")
    return merged


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, default=2, help="processes of the multi-process run (one per GPU)")
    p.add_argument("--processes", help="process counts to run, comma-separated [1,GPUS: the baseline and the N-GPU run]")
    p.add_argument("--cpu-smoke", action="store_true", help="2 CPU processes (gloo), tiny shapes, a few steps")
    p.add_argument("--cases", default="ddp,fsdp,zero3", help="comma-separated; zero3 only where deepspeed is installed")
    p.add_argument("--steps", type=int, help="timed steps per process [GPU 10, smoke 3]")
    p.add_argument("--warmup", type=int, help="untimed steps first [GPU 5, smoke 1]")
    p.add_argument("--resume-steps", type=int, default=3, help="fsdp: steps compared after the checkpoint")
    p.add_argument("--tokens", type=int, help="token budget per GPU and step [ddp 32,768; fsdp: the recipe's 8,192; smoke 1,024]")
    p.add_argument("--examples", type=int, help="synthetic examples [4,096; smoke 256]")
    p.add_argument("--bucket-mb", type=int, default=100, help="ddp: gradient bucket size (MB)")
    p.add_argument("--no-static-graph", dest="static_graph", action="store_false", help="ddp: without static_graph")
    p.add_argument("--eager", dest="compile", action="store_false", help="ddp: no compiled blocks")
    p.add_argument("--pack", choices=["auto", "yes", "no"], default="auto",
                   help="fsdp/zero3: packed rows (auto: when flash-attn is installed, as the recipe's packing: auto) "
                        "or length buckets")
    p.add_argument("--checkpointing", choices=["off", "on", "recipe"], default="off",
                   help="fsdp/zero3: activation checkpointing (the recipe turns it on; MFU does not count recomputation)")
    p.add_argument("--lr", type=float, help="fsdp/zero3: instead of the recipe's learning rate")
    p.add_argument("--peak-tflops", type=float, help="bf16 dense peak of one GPU (default: from its name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU: torch threads per process [cores / local processes]")
    p.add_argument("--case-timeout", type=int, default=540,
                   help="seconds one case x process count may take (the device allows 600 a command)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint-dir", default=tempfile.gettempdir(), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    smoke = args.cpu_smoke
    if args.steps is None:
        args.steps = 3 if smoke else 10
    if args.warmup is None:
        args.warmup = 1 if smoke else 5
    if args.examples is None:
        args.examples = 256 if smoke else 4096
    if smoke and args.tokens is None:
        args.tokens = 1024
    if smoke and args.threads is None:
        args.threads = 1  # both runs alike (the machine's cores are shared anyway)
    forward = [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--resume-steps={args.resume_steps}",
               f"--examples={args.examples}", f"--bucket-mb={args.bucket_mb}", f"--pack={args.pack}", f"--checkpointing={args.checkpointing}",
               f"--seed={args.seed}"]
    forward += [f"--tokens={args.tokens}"] if args.tokens else []
    forward += ["--cpu-smoke"] if smoke else []
    forward += [] if args.static_graph else ["--no-static-graph"]
    forward += [] if args.compile else ["--eager"]
    forward += [f"--peak-tflops={args.peak_tflops}"] if args.peak_tflops else []
    forward += [f"--lr={args.lr}"] if args.lr else []
    forward += [f"--threads={args.threads}"] if args.threads else []
    return args, forward


def main(argv: list[str] | None = None) -> None:
    args, forward = parse(argv)
    if args.worker:
        return worker(args)
    from rich.console import Console
    from rich.table import Table

    world = 2 if args.cpu_smoke else args.gpus
    if not args.cpu_smoke and torch.cuda.device_count() < world:
        sys.exit(f"--gpus {world}: only {torch.cuda.device_count()} GPU(s) here (use --cpu-smoke without GPUs)")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"--cases: unknown {', '.join(unknown)} (choose from {', '.join(CASES)})")
    if "zero3" in cases and importlib.util.find_spec("deepspeed") is None:
        print("zero3: deepspeed is not installed; skipped", file=sys.stderr)
        cases.remove("zero3")
    counts = [int(n) for n in args.processes.split(",")] if args.processes else [1, world]
    if any(n < 1 or n > world for n in counts):
        sys.exit(f"--processes {args.processes}: each count must be between 1 and {world}")
    outcomes = []
    given = sys.argv[1:] if argv is None else argv
    command, machine = " ".join(["python", sys.argv[0], *given]), f"{environment()}; {time.strftime('%Y-%m-%d')}"
    with tempfile.TemporaryDirectory(prefix="train_multigpu-") as scratch:
        for case in cases:
            for n in counts:
                outcome = launch(case, n, args, forward, Path(scratch))
                outcome.command, outcome.machine = command, machine
                outcomes.append(outcome)
                if not args.cpu_smoke:  # after every run: a command cut short keeps what it measured
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    merged = merge(args.out.with_suffix(".json"), [outcome])
                    args.out.write_text(markdown(merged, "distill training on several GPUs vs 1: "
                                                 + environment().split(";")[0]))
    title = f"distill training on {world} processes vs 1: {environment().split(';')[0]}" + (
        " (CPU smoke: tiny shapes)" if args.cpu_smoke else "")
    table = Table(title=title)
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="right" if 2 <= i <= 8 else "left")
    for row in rows(outcomes):
        table.add_row(*row)
    if args.cpu_smoke:
        table.caption = "CPU smoke: checks that every path runs; timings on shared CPU cores say nothing about GPUs."
    Console(width=240).print(table)
    if not args.cpu_smoke:
        print(f"wrote {args.out}", file=sys.stderr)
    if any(o.error for o in outcomes if o.world > 1):
        sys.exit(1)


if __name__ == "__main__":
    main()
