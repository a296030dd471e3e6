from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The publishers' data sets beside the checkout (as in CI); absent on a user's clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data sets not found at {SHARED_DATA} (they sit beside the checkout in CI)")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    import torch

    if not torch.cuda.is_available():  # Triton kernels (the fused decode attention) run on CPU tensors, interpreted
        os.environ.setdefault("TRITON_INTERPRET", "1")
    # Until pyproject.toml registers it (another change adds it there); registering twice is harmless.
    config.addinivalue_line("markers", "slow: a long test (a load test, for instance); deselect with -m 'not slow'")
