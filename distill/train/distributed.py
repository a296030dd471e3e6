"""What every process of a multi-process run does before its process group exists."""
from __future__ import annotations

import importlib

import torch


def before_process_group() -> None:
    """Imports torch.distributed.nn while no process group exists. Its collectives take `group=group.WORLD`
    as a default argument, bound at import: imported after init_process_group (transformers, FSDP and
    torch.distributed.checkpoint import it lazily), it keeps the default group alive for good, so
    destroy_process_group cannot free it and the group's C++ threads still run when the process exits,
    which then now and then aborts ("terminate called without an active exception"). Imported before,
    the default is None: the default group of the moment."""
    if torch.distributed.is_available():
        importlib.import_module("torch.distributed.nn")
