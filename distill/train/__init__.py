"""`distill train`: fine-tune a seq2seq or causal student on an MTD data set.

`train(config)` wires the small pieces together: config -> data -> model -> loop -> checkpoints.
Multi-GPU runs go through accelerate (`accelerate launch -m distill train ...`).
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from distill.cues import load_cues
from distill.records import InputError
from distill.students import StudentSettings, model_kind, pretrained_tokenizer
from distill.train.card import write_model_card
from distill.train.checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_model,
    sharded,
)
from distill.train.compile import block_lists, compile_blocks
from distill.train.config import TrainConfig, load_config
from distill.train.data import (
    IGNORE,
    Collator,
    aligned_share,
    bucket_shape,
    length,
    load_splits,
    plan_batches,
    plan_buckets,
    tokenize,
)
from distill.train.distributed import before_process_group
from distill.train.log import MetricsLog, StepProgress, trackers, truncate_metrics
from distill.train.loop import Loop, Plan, kd_loss
from distill.train.model import count_parameters, load_model, load_tokenizer, packing, packs
from distill.train.optim import MasterAdamW, build_optimizer
from distill.train.plot import plot_losses

__all__ = ["TrainConfig", "load_config", "train"]


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from; refuses to mix a new run into an old one."""
    if resume:
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise InputError("nothing to resume: no complete checkpoint", out / "checkpoints")
        return checkpoint
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError("output exists; pass --resume to continue it or --overwrite to start over", out)
    return None


def _clear_run(out: Path) -> None:
    # Only what a run writes: stale checkpoints would be resumed, stale metrics appended to.
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    for name in ("metrics.jsonl", "loss.png"):
        (out / name).unlink(missing_ok=True)


def _finish(accelerator: Any, model: Any, tokenizer: Any, config: TrainConfig, settings: StudentSettings) -> None:
    """The final student in the output dir, loadable by `distill.students.load_student` (LoRA merged)."""
    out = Path(config.output_dir)
    unwrapped = accelerator.unwrap_model(model)
    if config.lora.enabled:
        save_model(accelerator, model, tokenizer, out / "adapter")
        if accelerator.is_main_process:
            if config.lora.quantize != "none":  # merge into full-precision base weights, not the quantised ones
                from peft import PeftModel
                from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

                auto = AutoModelForSeq2SeqLM if settings.kind == "seq2seq" else AutoModelForCausalLM
                base = auto.from_pretrained(config.student, dtype=torch.bfloat16)
                unwrapped = PeftModel.from_pretrained(base, str(out / "adapter"))
            merged = unwrapped.merge_and_unload()
            merged.config.use_cache = True
            merged.save_pretrained(out)
            tokenizer.save_pretrained(out)
    else:
        unwrapped.config.use_cache = True
        save_model(accelerator, model, tokenizer, out)
    if accelerator.is_main_process:
        settings.save(out)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _start(config: TrainConfig, out: Path, on_gpu: bool, clear: bool) -> Any:
    """The accelerator (torch's threads and precision set); its main process prepares the output dir."""
    from accelerate import Accelerator

    if not on_gpu:  # processes launched together on one host share its cores
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(config.threads or max(1, len(os.sched_getaffinity(0)) // local_world))
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    before_process_group()
    # cpu=True without CUDA: processes launched by torchrun (`--num-processes N`) then join one gloo group
    # instead of each training alone as its own main process.
    accelerator = Accelerator(mixed_precision=precision, log_with=trackers(config) or None, project_dir=str(out),
                              cpu=not on_gpu)
    accelerator.wait_for_everyone()  # every process has checked the output dir before the main one writes to it
    if accelerator.is_main_process:
        if clear:
            _clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        config.dump(out / CONFIG_FILE)
    return accelerator


def _student(config: TrainConfig, splits: Any, checkpoint: Path | None, on_gpu: bool) -> tuple[Any, Any, StudentSettings]:
    """Tokenizer, model (the checkpoint's weights when resuming) and the settings saved with the student."""
    tokenizer = load_tokenizer(config, splits.train, checkpoint=checkpoint)
    _check_teacher(config, splits, tokenizer)  # before any model is loaded
    model = load_model(config, tokenizer, on_gpu=on_gpu, weights_from=checkpoint)
    kind = model_kind(model.config)
    if kind == "causal" and config.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise InputError(f"key 'prompt_format': 'chat', but the tokenizer of {config.student!r} has no chat template")
    settings = StudentSettings(kind=kind, cues=splits.cues or dict(load_cues()), max_source_len=config.max_source_len,
                               max_target_len=config.max_target_len, prompt_format=config.prompt_format)
    return tokenizer, model, settings


def _check_teacher(config: TrainConfig, splits: Any, tokenizer: Any) -> None:
    """kd and gkd: the teacher shares the student's tokenizer, and kd's data carries its log-probs."""
    if config.objective == "sft":
        return
    from distill.train.gkd import teacher_path
    from distill.train.vocab import check_ids_fit, check_shared_vocab

    if config.teacher:
        teacher = pretrained_tokenizer(teacher_path(config.teacher))
        check_shared_vocab(teacher, tokenizer, config.teacher, config.student)
    if config.objective == "kd":
        carried = [row["kd"] for row in splits.train if "kd" in row]
        if not carried:
            raise InputError("--objective kd: no row carries the teacher's log-probs (columns kd_ids, kd_top_ids, "
                             "kd_top_logprobs); write them with `distill generate --logprobs K` and mix again", config.data)
        check_ids_fit(max(int(max(kd.top_ids.max(initial=0), kd.ids.max(initial=0))) for kd in carried),
                      tokenizer, config.student, config.data)


def _topk(config: TrainConfig, splits: Any) -> int:
    """kd: the widest top-k in the data (positions without the teacher's carry the one-hot)."""
    return max((row["kd"].k for row in splits.train if "kd" in row), default=1) if config.objective == "kd" else 0


def _batches(config: TrainConfig, splits: Any, tokenizer: Any, model: Any, settings: StudentSettings,
             accelerator: Any, on_gpu: bool) -> tuple[Collator, Plan, list[Any] | None]:
    """The collator, this process's plan of training batches and its share of the validation batches."""
    kind = settings.kind
    packed = packs(model, kind, packing(config), config.objective)
    collate = Collator(kind, tokenizer.pad_token_id, decoder_start_id=getattr(model.config, "decoder_start_token_id", None),
                       packing=packed, pad_to_multiple_of=config.pad_to_multiple_of or (8 if on_gpu else 1),
                       buckets=config.length_buckets, batch_size=config.batch_size, max_tokens=config.max_tokens,
                       topk=_topk(config, splits))
    plan = Plan(tokenize(splits.train, tokenizer, settings), config.batch_size, config.max_tokens,
                config.group_by_length, packed, config.seed, config.grad_accum,
                rank=accelerator.process_index, world=accelerator.num_processes, buckets=config.length_buckets)
    if not splits.validation:
        return collate, plan, None
    val = tokenize(splits.validation, tokenizer, settings)
    if config.length_buckets and not packed:
        batches = plan_buckets([bucket_shape(e, config.length_buckets) for e in val], batch_size=config.batch_size,
                               max_tokens=config.max_tokens)
    else:
        batches = plan_batches([length(e) for e in val], batch_size=config.batch_size,
                               max_tokens=config.max_tokens, packed=packed)
    world = accelerator.num_processes
    eval_batches = [collate([val[i] for i in b]) for b in batches[accelerator.process_index::world]]
    # Every process runs as many forwards (FSDP gathers parameters in each, DDP syncs buffers in the first):
    # one short of its share (shares differ by one at most) repeats a batch with no target tokens, which adds
    # nothing to the loss.
    if batches and len(eval_batches) < -(-len(batches) // world):
        first = collate([val[i] for i in batches[0]])
        eval_batches.append(first | {"labels": torch.full_like(first["labels"], IGNORE)})
    return collate, plan, eval_batches


def _length(config: TrainConfig, plan: Plan) -> tuple[int, int]:
    """Optimizer steps in all, and the epochs planned to reach them."""
    if config.max_steps:
        return config.max_steps, math.ceil(config.max_steps / plan.steps_in_epoch(0)) + 1  # plans vary a little per epoch
    return sum(plan.steps_in_epoch(e) for e in range(config.epochs)), config.epochs


def _compile(model: Any, config: TrainConfig, kind: str, packed: bool) -> None:
    # Graphs per block code: (first layer, others) per stack x batch shapes x (train, eval). Packed rows
    # ignore length_buckets.
    buckets = [] if packed else config.length_buckets
    shapes = len(buckets) ** (2 if kind == "seq2seq" else 1) if buckets else 8
    compile_blocks(model, graph_bound=2 * len(block_lists(model)) * shapes * 2, dynamic=config.compile != "static")


def _objective(loop: Loop, config: TrainConfig, settings: StudentSettings, tokenizer: Any, on_gpu: bool,
               main: bool) -> None:
    """The loss of `config.objective` (and, for gkd, the teacher and the on-policy sampler)."""
    from distill.progress import console

    if config.objective == "kd":
        loop.loss = kd_loss(config.kd_alpha)
        if main:
            console.print(f"kd: the teacher's top-{loop.collate.topk} covers {aligned_share(loop.plan.examples):.1%} "
                          "of the target tokens (the rest: the data's token)")
    elif config.objective == "gkd":
        from distill.train.gkd import OnPolicy, load_teacher

        from accelerate.utils import extract_model_from_parallel

        student = getattr(extract_model_from_parallel(loop.model).config, "_attn_implementation", None)
        teacher = load_teacher(config.teacher or "", settings.kind, loop.accelerator.device, on_gpu, student)
        gkd = OnPolicy(teacher, settings.kind, config.beta, config.on_policy_fraction,
                       config.gkd_max_new_tokens or config.max_target_len, config.gkd_temperature, tokenizer.pad_token_id,
                       tokenizer.eos_token_id, config.seed, student=loop.model, device=loop.accelerator.device)
        loop.loss, loop.rewrite = gkd.loss, gkd.rewrite


def _restore(accelerator: Any, checkpoint: Path | None, optimizer: Any, scheduler: Any, out: Path,
             packed: bool) -> TrainState:
    """A fresh state, or the checkpoint's (its optimizer and scheduler loaded, later metrics dropped)."""
    if checkpoint is None:
        return TrainState(packed=packed)
    state = load_checkpoint(accelerator, checkpoint, optimizer, scheduler)
    if state.packed is not None and state.packed != packed:  # another plan: the saved position would point elsewhere
        was, now = ("packed", "padded") if state.packed else ("padded", "packed")
        raise InputError(f"field 'packed': the checkpoint's micro-batches were {was}, this run's would be {now} "
                         f"(another batch plan, so the data position would not match); set packing: "
                         f"{str(state.packed).lower()} to resume", checkpoint / STATE_FILE)
    state.packed = packed
    if accelerator.is_main_process:
        truncate_metrics(out / "metrics.jsonl", state.step)
    return state


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train a student as `config` says; returns the output dir holding the final student.

    `resume`: continue from the newest checkpoint exactly (same losses as an uninterrupted run).
    `on_step(step, metrics)`: called after every optimizer step (metrics empty between log steps).
    """
    from accelerate.utils import set_seed

    out = Path(config.output_dir)
    checkpoint = _prepare_output(out, resume, overwrite)
    on_gpu = torch.cuda.is_available()
    accelerator = _start(config, out, on_gpu, clear=overwrite and checkpoint is None)
    main = accelerator.is_main_process
    set_seed(config.seed)  # before the model: tiny students and LoRA adapters start from seeded weights

    splits = load_splits(config.data)
    tokenizer, model, settings = _student(config, splits, checkpoint, on_gpu)
    collate, plan, eval_batches = _batches(config, splits, tokenizer, model, settings, accelerator, on_gpu)
    if config.compile == "static" and plan.packed:  # packed rows ignore length_buckets: a compile per batch
        raise InputError("key 'compile': static needs padded length_buckets, and this student packs its "
                         "batches; set packing: false")
    total_steps, epochs = _length(config, plan)
    optimizer = build_optimizer(model, config, fused=on_gpu)
    if isinstance(optimizer, MasterAdamW) and sharded(accelerator):  # FSDP/DeepSpeed swap the parameters
        raise InputError("key 'dtype': bfloat16 weights with full fine-tuning under FSDP/DeepSpeed; keep float32 "
                         "weights (dtype: auto): their mixed precision computes in bf16")
    if isinstance(optimizer, MasterAdamW) and accelerator.mixed_precision == "fp16":  # the scaler unscales the copies
        raise InputError("key 'dtype': bfloat16 weights with mixed_precision fp16; use mixed_precision bf16 or auto")
    scheduler = _scheduler(optimizer, config, total_steps)
    if config.compile:
        _compile(model, config, settings.kind, plan.packed)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = _restore(accelerator, checkpoint, optimizer, scheduler, out, plan.packed)
    if main:
        from accelerate.utils import extract_model_from_parallel

        from distill.progress import console

        trainable, total = count_parameters(model)
        attn = getattr(extract_model_from_parallel(model).config, "_attn_implementation", None)
        console.print(f"{settings.kind} student {config.student}: {trainable:,} trainable of {total:,} parameters; "
                      f"{len(plan.examples):,} examples, {total_steps:,} steps; attention {attn}"
                      + (f"; resuming at step {state.step}" if checkpoint else ""))
    accelerator.init_trackers("distill-train", config=_flat(config.to_dict()))
    metrics = MetricsLog(out / "metrics.jsonl", accelerator)

    def save(state: TrainState) -> None:
        save_checkpoint(accelerator, model, optimizer, scheduler, tokenizer, config, settings, state,
                        config.keep_checkpoints)

    loop = Loop(accelerator, model, optimizer, scheduler, plan, collate, total_steps, epochs, config.max_grad_norm,
                config.log_every, metrics, eval_batches, config.eval_every, config.save_every, save, on_step)
    _objective(loop, config, settings, tokenizer, on_gpu, main)
    try:
        with StepProgress(total_steps, state.step, enabled=main) as progress:
            state = loop.run(state, progress)
        if (eval_loss := loop.evaluate()) is not None:
            metrics.write({"step": state.step, "eval_loss": round(eval_loss, 5)})
        if checkpoint is None or state.step > int(checkpoint.name.removeprefix("step-")):
            save(state)
        _finish(accelerator, model, tokenizer, config, settings)
    finally:
        metrics.close()
        accelerator.end_training()
    if main:
        plot_losses(out / "metrics.jsonl", out / "loss.png")
        write_model_card(out)
    return out
