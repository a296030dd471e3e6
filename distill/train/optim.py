"""The optimizer: AdamW, with fp32 master copies of the weights that are trained in bf16.

Adam's updates at fine-tuning rates (lr 2e-5) are far below a bf16 weight's resolution (8 bits of
mantissa, steps of ~0.4%), so updating bf16 weights in place rounds most updates away. `MasterAdamW`
keeps an fp32 copy of each bf16 trainable weight: `step()` copies the weight's gradient into the copy's,
updates the copies, and rounds them back into the weights (foreach copies: a few kernel launches for
all tensors). The model then computes in bf16 and trains as with fp32 weights. The copies are in the
state dict: a resumed run continues from them, not from the rounded weights.

Gradients stay in the weights' dtype until `step()`: the micro-batches of one step (`grad_accum`) add up,
DDP all-reduces and clipping scales them in bf16, as under FSDP with a bf16 reduce dtype. The copies
follow the weights' device (the optimizer is built before accelerate moves the model to the GPU).
"""
from __future__ import annotations

from typing import Any

import torch

from distill.train.config import TrainConfig

MASTERS = "master_weights"  # state-dict key of the fp32 copies


def build_optimizer(model: Any, config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; `MasterAdamW` where any of them is bf16."""
    # No weight decay on biases and norm weights (1-D tensors).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    cls = MasterAdamW if any(p.dtype == torch.bfloat16 for p in params) else torch.optim.AdamW
    return cls(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


class MasterAdamW(torch.optim.AdamW):
    """AdamW that updates fp32 copies of the bf16 parameters it is given (others it updates in place)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        self.weights: list[torch.Tensor] = []  # the model's bf16 parameters ...
        self.masters: list[torch.Tensor] = []  # ... and their fp32 copies, which the optimizer owns
        self._grads: list[torch.Tensor] | None = None  # the copies' gradients
        if isinstance(params, torch.Tensor):
            raise TypeError("params: an iterable of tensors or of parameter groups, got a tensor")
        params = list(params)
        if params and not isinstance(params[0], dict):  # a plain list of tensors, as torch's optimizers take
            params = [{"params": params}]
        groups = []
        for group in params:
            own = []
            tensors = group["params"]
            for p in [tensors] if isinstance(tensors, torch.Tensor) else tensors:
                if p.dtype == torch.bfloat16:
                    self.weights.append(p)
                    self.masters.append(p.detach().float())
                    own.append(self.masters[-1])
                else:
                    own.append(p)
            groups.append({**group, "params": own})
        super().__init__(groups, **kwargs)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if closure is not None:  # it would compute gradients after they were copied
            raise ValueError("MasterAdamW.step takes no closure")
        self._follow_weights()
        if self._grads is None:  # fp32 gradient buffers, kept between steps (no allocation per step)
            self._grads = [torch.empty_like(m) for m in self.masters]
        stepped = [i for i, w in enumerate(self.weights) if w.grad is not None]
        for weight, master, grad in zip(self.weights, self.masters, self._grads):
            master.grad = None if weight.grad is None else grad  # AdamW skips a parameter without a gradient
        if stepped:  # foreach: a few launches for every tensor (a 738M T5 has ~500), casting on the way
            torch._foreach_copy_([self._grads[i] for i in stepped], [self.weights[i].grad for i in stepped])
        _adamw_step(self)
        if stepped:
            torch._foreach_copy_([self.weights[i] for i in stepped], [self.masters[i] for i in stepped])  # rounds

    def _follow_weights(self) -> None:
        """Keep each copy, and its Adam state, on its weight's device: the model may move after the optimizer
        is built (accelerate's `prepare` moves it to the GPU)."""
        moved = False
        for weight, master in zip(self.weights, self.masters):
            if master.device != weight.device:
                master.data = master.data.to(weight.device)
                moved = True
        if moved:
            self._grads = None
            super().load_state_dict(super().state_dict())  # torch places the state by its parameters' devices

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for weight in self.weights:
            if set_to_none:
                weight.grad = None
            elif weight.grad is not None:
                weight.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), MASTERS: list(self.masters)}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._follow_weights()  # first: torch then places the loaded state on the copies' (final) device
        state_dict = dict(state_dict)
        saved = state_dict.pop(MASTERS, None)
        super().load_state_dict(state_dict)
        if saved is None:  # a checkpoint written without copies: start them from the weights
            return
        if len(saved) != len(self.masters):
            raise ValueError(f"optimizer state: {len(saved)} master weights saved, {len(self.masters)} expected")
        for weight, master, value in zip(self.weights, self.masters, saved):
            master.copy_(value)
            weight.copy_(master)


def _adamw_step(optimizer: torch.optim.Optimizer) -> None:
    """AdamW's step without the wrapper that runs step hooks, which torch puts on AdamW.step once an AdamW
    exists (MasterAdamW.step, which calls this, already ran them)."""
    step = torch.optim.AdamW.step
    while getattr(step, "hooked", False):
        step = step.__wrapped__
    step(optimizer)
