"""The training loop: token-weighted loss, one optimizer step over micro-batches, evaluation."""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel

from distill.train.checkpoint import TrainState
from distill.train.data import IGNORE, Collator, bucket_shape, length, plan_batches, plan_buckets
from distill.train.kd import topk_kl
from distill.train.log import MetricsLog, StepProgress

Batch = dict[str, Any]  # tensors, and the ints of a packed batch (`max_length_q`)


LossFn = Callable[[Any, Batch], torch.Tensor]
TEACHER_KEYS = ("labels", "kd_ids", "kd_lp")  # batch entries that are not model inputs


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def model_targets(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, keep): the model's logits at the target positions, (targets, vocab), and the mask that
    picks those positions out of `batch`'s (rows, width) entries."""
    labels = batch["labels"]
    keep = labels != IGNORE
    # use_cache=False: T5's decoder otherwise builds a KV cache while training (whose per-layer state
    # also makes every compiled decoder layer recompile).
    inputs = {k: v for k, v in batch.items() if k not in TEACHER_KEYS} | {"use_cache": False}
    return target_logits(model, inputs, keep), keep


def loss_sum(model: Any, batch: Batch) -> torch.Tensor:
    """Summed cross-entropy over the target tokens of a micro-batch (labels are already aligned)."""
    logits, keep = model_targets(model, batch)
    return F.cross_entropy(logits.float(), batch["labels"][keep], reduction="sum")


def kd_loss(alpha: float) -> LossFn:
    """Offline kd: (1 - alpha) KL to the teacher's top-k (`kd_ids`/`kd_lp`) + alpha cross-entropy, summed."""
    def loss(model: Any, batch: Batch) -> torch.Tensor:
        logits, keep = model_targets(model, batch)
        kl = topk_kl(logits, batch["kd_ids"][keep], batch["kd_lp"][keep])
        if not alpha:
            return kl
        return (1 - alpha) * kl + alpha * F.cross_entropy(logits.float(), batch["labels"][keep], reduction="sum")
    return loss


def target_logits(model: Any, inputs: dict[str, Any], keep: torch.Tensor) -> torch.Tensor:
    """The logits at the `keep` positions only, (targets, vocab): the LM head is applied to those
    positions' hidden states alone (a causal model's prompt positions and either kind's padding never
    reach the vocabulary projection, and backward scatters no full-vocabulary gradient).

    A forward pre-hook cuts the head's input, so the call still goes through `model` itself: DDP/FSDP
    wrappers see their forward, peft adapters (on the head too) and compiled blocks run as usual, and no
    `logits_to_keep` argument is needed (its mask form exists only in recent transformers releases).
    """
    head = extract_model_from_parallel(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _, args: (args[0][keep], *args[1:]))
    try:
        return model(**inputs).logits
    finally:
        handle.remove()


def target_tokens(batch: Batch) -> int:
    return int((batch["labels"] != IGNORE).sum())


@dataclass
class Plan:
    """Which examples each optimizer step of this process trains on."""

    examples: list[dict[str, list[int]]]
    batch_size: int
    max_tokens: int
    group_by_length: bool
    packed: bool
    seed: int
    grad_accum: int
    rank: int = 0
    world: int = 1
    buckets: list[int] = field(default_factory=list)  # fixed batch shapes (`plan_buckets`)

    def micro_batches(self, epoch: int) -> list[list[int]]:
        """This process's micro-batches of an epoch (the same count on every process)."""
        if self.buckets and not self.packed:
            batches = plan_buckets([bucket_shape(e, self.buckets) for e in self.examples], batch_size=self.batch_size,
                                   max_tokens=self.max_tokens, seed=self.seed, epoch=epoch)
        else:
            batches = plan_batches([length(e) for e in self.examples], batch_size=self.batch_size,
                                   max_tokens=self.max_tokens, group_by_length=self.group_by_length,
                                   packed=self.packed, seed=self.seed, epoch=epoch)
        if len(batches) < self.world:  # too few to share: processes repeat batches rather than sit idle
            batches = [batches[i % len(batches)] for i in range(self.world)]
        usable = len(batches) // self.world * self.world  # the remainder is dropped (as drop_last)
        return batches[self.rank:usable:self.world]

    def steps_in_epoch(self, epoch: int) -> int:
        return -(-len(self.micro_batches(epoch)) // self.grad_accum)


@dataclass
class Loop:
    """What one run trains: the prepared model and optimizer, the data plan, and where to report."""

    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    plan: Plan
    collate: Collator
    total_steps: int
    epochs: int
    max_grad_norm: float
    log_every: int
    metrics: MetricsLog
    eval_batches: list[Batch] | None  # this process's share; None: no validation split
    eval_every: int
    save_every: int
    save: Callable[[TrainState], None]
    on_step: Callable[[int, dict[str, float]], None] | None = None
    loss: LossFn = loss_sum  # the training objective's (evaluation is always the cross-entropy)
    # gkd: replaces some micro-batches' targets by the student's own samples (examples, step) -> examples
    rewrite: Callable[[list[dict[str, Any]], int], list[dict[str, Any]]] | None = None

    def to_device(self, batch: Batch) -> Batch:
        return to_device(batch, self.accelerator.device)

    def step(self, micro: list[Batch]) -> torch.Tensor:
        """One optimizer step; returns the summed target loss (a device tensor: no host sync here)."""
        accelerator, model = self.accelerator, self.model
        n_tokens = sum(target_tokens(b) for b in micro)
        if accelerator.num_processes > 1:  # normalise by the tokens of every process, as one big batch
            total = accelerator.reduce(torch.tensor(n_tokens, device=accelerator.device), "sum").item()
            scale = accelerator.num_processes / max(total, 1)
        else:
            scale = 1 / max(n_tokens, 1)
        summed = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(micro):
            sync = i == len(micro) - 1
            with nullcontext() if sync else accelerator.no_sync(model):
                loss = self.loss(model, self.to_device(batch))
                accelerator.backward(loss * scale)
            summed += loss.detach()
        if self.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return summed

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if self.eval_batches is None:
            return None
        self.model.eval()
        total = torch.zeros((), device=self.accelerator.device)
        tokens = 0
        for batch in self.eval_batches:
            total += loss_sum(self.model, self.to_device(batch))
            tokens += target_tokens(batch)
        self.model.train()
        both = self.accelerator.reduce(torch.stack([total, torch.tensor(float(tokens), device=total.device)]), "sum")
        return float(both[0] / both[1].clamp(min=1))

    def run(self, state: TrainState, progress: StepProgress) -> TrainState:
        accelerator, plan = self.accelerator, self.plan
        window_loss = torch.zeros((), device=accelerator.device)
        window_targets = window_tokens = 0
        window_start = time.perf_counter()
        self.model.train()
        for epoch in range(state.epoch, self.epochs):
            batches = plan.micro_batches(epoch)
            start = state.batch if epoch == state.epoch else 0
            for first in range(start, len(batches), plan.grad_accum):
                if state.step >= self.total_steps:
                    return state
                examples = [[plan.examples[i] for i in b] for b in batches[first:first + plan.grad_accum]]
                if self.rewrite is not None:
                    examples = [self.rewrite(ex, state.step * plan.grad_accum + j) for j, ex in enumerate(examples)]
                micro = [self.collate(ex) for ex in examples]
                window_loss += self.step(micro)
                window_targets += sum(target_tokens(b) for b in micro)
                tokens = sum(length(e) for ex in examples for e in ex)
                window_tokens += tokens
                state.step += 1
                state.tokens += tokens
                state.epoch, state.batch = (epoch, first + plan.grad_accum)
                if state.batch >= len(batches):
                    state.epoch, state.batch = epoch + 1, 0
                row: dict[str, float] = {}
                if state.step % self.log_every == 0 or state.step == self.total_steps:
                    targets = torch.tensor(float(window_targets), device=accelerator.device)
                    loss = accelerator.reduce(window_loss, "sum").item() / max(accelerator.reduce(targets, "sum").item(), 1)
                    elapsed = time.perf_counter() - window_start  # after .item(): the GPU has caught up
                    row = {"step": state.step, "epoch": round(state.epoch + state.batch / max(len(batches), 1), 4),
                           "loss": round(loss, 5), "lr": self.scheduler.get_last_lr()[0],
                           "tokens_per_s": round(window_tokens * accelerator.num_processes / elapsed, 1),
                           "tokens": state.tokens * accelerator.num_processes}
                    self.metrics.write(row)
                    progress.advance(loss=f"{loss:.4f}", lr=f"{row['lr']:.2e}", tps=f"{row['tokens_per_s']:,.0f}")
                    window_loss.zero_()
                    window_targets = window_tokens = 0
                    window_start = time.perf_counter()
                else:
                    progress.advance()
                checkpoint_due = self.save_every and state.step % self.save_every == 0
                eval_due = self.eval_every and state.step % self.eval_every == 0
                # The last step's evaluation is left to the caller, which evaluates at the end anyway.
                if ((checkpoint_due and not self.eval_every) or eval_due) and state.step < self.total_steps:
                    if (eval_loss := self.evaluate()) is not None:
                        self.metrics.write({"step": state.step, "eval_loss": round(eval_loss, 5)})
                        row = {**row, "eval_loss": eval_loss}
                if checkpoint_due and state.step < self.total_steps:
                    self.save(state)
                if self.on_step is not None:
                    self.on_step(state.step, row)
        return state
