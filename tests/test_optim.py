"""`MasterAdamW`: bf16 weights trained through fp32 copies, as fp32 weights would be."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from distill.train.config import TrainConfig
from distill.train.optim import MasterAdamW, build_optimizer


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # cuda: fused AdamW, foreach copies on the GPU


def _model(dtype: torch.dtype, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(device, dtype)


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: range) -> list[float]:
    losses = []
    for step in steps:
        torch.manual_seed(100 + step)
        x, y = torch.randn(16, 32), torch.randn(16, 8)
        loss = torch.nn.functional.mse_loss(model(x.to(next(model.parameters()).dtype)).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_bf16_weights_get_master_copies_and_fp32_ones_do_not() -> None:
    config = TrainConfig(lr=1e-5, weight_decay=0.01)
    assert type(build_optimizer(_model(torch.float32), config, fused=False)) is torch.optim.AdamW
    bf16 = _model(torch.bfloat16)
    optimizer = build_optimizer(bf16, config, fused=False)
    assert isinstance(optimizer, MasterAdamW)
    assert all(m.dtype == torch.float32 for group in optimizer.param_groups for m in group["params"])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]  # matrices, then biases


@pytest.mark.parametrize("device", DEVICES)
def test_small_updates_accumulate_in_the_copies_as_in_fp32(device: str) -> None:
    """At lr 1e-5 plain AdamW on bf16 weights rounds nearly every update away; the copies follow an
    fp32 AdamW fed the same (bf16) gradients, and the weights are those copies rounded."""
    ours, plain, reference = (_model(dtype, device) for dtype in (torch.bfloat16, torch.bfloat16, torch.float32))
    with torch.no_grad():
        for r, w in zip(reference.parameters(), ours.parameters()):
            r.copy_(w)  # the same starting point as the bf16 weights
    start = [p.detach().clone() for p in ours.parameters()]
    fused = device == "cuda" or None
    masters = MasterAdamW([{"params": list(ours.parameters())}], lr=1e-5, fused=fused)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-5)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-5, fused=fused)
    for step in range(100):
        torch.manual_seed(step)
        x = torch.randn(16, 32, device=device)
        for model in (ours, plain):
            model(x.bfloat16()).float().square().mean().backward()
        for r, w in zip(reference.parameters(), ours.parameters()):
            r.grad = w.grad.float()
        for opt in (masters, plain_opt, ref_opt):
            opt.step()
            opt.zero_grad()
    moved_plain = sum(int((p != s).sum()) for p, s in zip(plain.parameters(), start))
    moved_ours = sum(int((p != s).sum()) for p, s in zip(ours.parameters(), start))
    total = sum(p.numel() for p in start)
    assert moved_plain < 0.05 * total < 0.5 * total < moved_ours
    for r, m, w in zip(reference.parameters(), masters.masters, ours.parameters()):
        torch.testing.assert_close(m, r.detach(), rtol=0, atol=1e-7)
        assert torch.equal(w, m.bfloat16())


def test_resume_from_the_state_dict_matches_uninterrupted() -> None:
    config = TrainConfig(lr=1e-3)
    full = _model(torch.bfloat16)
    uninterrupted = _train(full, build_optimizer(full, config, fused=False), range(6))

    first = _model(torch.bfloat16)
    optimizer = build_optimizer(first, config, fused=False)
    _train(first, optimizer, range(3))
    saved_weights = {k: v.clone() for k, v in first.state_dict().items()}
    saved_state = optimizer.state_dict()
    second = _model(torch.bfloat16)  # a fresh process: weights from the checkpoint, then the optimizer state
    second.load_state_dict(saved_weights)
    resumed_opt = build_optimizer(second, config, fused=False)
    resumed_opt.load_state_dict(saved_state)
    resumed = _train(second, resumed_opt, range(3, 6))
    assert resumed == uninterrupted[3:]
    for a, b in zip(full.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_step_hooks_run_once_and_closures_are_refused() -> None:
    torch.optim.AdamW(_model(torch.float32).parameters())  # torch then wraps AdamW.step with its hooks
    model = _model(torch.bfloat16)
    optimizer = MasterAdamW(model.parameters(), lr=1e-3)  # a plain parameter list, as torch's optimizers take
    calls = []
    optimizer.register_step_pre_hook(lambda *_: calls.append(1))
    _train(model, optimizer, range(2))
    assert len(calls) == 2
    with pytest.raises(ValueError, match="no closure"):
        optimizer.step(lambda: 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="moves the model from CPU to a GPU")
def test_copies_follow_the_model_to_the_gpu() -> None:
    """As in `distill train`: the optimizer is built on the CPU model, which accelerate then moves."""
    model = _model(torch.bfloat16)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3), fused=True)
    model.cuda()
    x = torch.randn(16, 32, device="cuda").bfloat16()
    for _ in range(2):
        model(x).float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    for weight, master in zip(optimizer.weights, optimizer.masters):
        assert master.device == weight.device and torch.equal(weight, master.bfloat16())
        assert all(v.device == weight.device for v in optimizer.state[master].values() if v.ndim)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="accelerate moves a CPU-built model to a GPU")
def test_accelerate_prepare_and_resume_on_the_gpu_match_uninterrupted(tmp_path) -> None:
    """`distill train`'s order: optimizer on the CPU model, `prepare`, steps, a checkpoint loaded on the CPU."""
    from accelerate import Accelerator

    def run(steps: range, state: str | None = None) -> tuple[torch.nn.Module, Any, list[float]]:
        model = _model(torch.bfloat16)
        if state is not None:
            model.load_state_dict(torch.load(tmp_path / "model.pt"))
        model, optimizer = Accelerator(mixed_precision="no").prepare(
            model, build_optimizer(model, TrainConfig(lr=1e-3), fused=True))
        if state is not None:
            optimizer.load_state_dict(torch.load(state, map_location="cpu", weights_only=False))
        losses = []
        for step in steps:
            torch.manual_seed(100 + step)
            x, y = torch.randn(16, 32, device="cuda"), torch.randn(16, 8, device="cuda")
            loss = torch.nn.functional.mse_loss(model(x.bfloat16()).float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return model, optimizer, losses

    _, _, uninterrupted = run(range(6))
    model, optimizer, _ = run(range(3))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    model, optimizer, resumed = run(range(3, 6), str(tmp_path / "optimizer.pt"))
    assert resumed == uninterrupted[3:]
    inner = optimizer.optimizer
    for weight, master in zip(inner.weights, inner.masters):
        assert master.device == weight.device and torch.equal(weight, master.bfloat16())
        assert all(v.device == weight.device for v in inner.state[master].values())  # fused: `step` too
