"""Regional compilation: torch.compile each repeated block (the layers of an encoder or decoder).

Compiling the blocks rather than the whole model keeps the data-dependent parts (masks, position
bias, the target-only LM head) out of the graphs, and the layers of a stack share one compiled graph,
so compile time is that of a few layers. Shapes are dynamic; with `length_buckets` they are also few,
which bounds the recompiles.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx.experimental._config


def block_lists(model: torch.nn.Module) -> list[torch.nn.ModuleList]:
    """The module lists of repeated blocks (every item of one class, more than one item)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 1
            and len({type(b) for b in m}) == 1]


def compile_blocks(model: Any, graph_bound: int, dynamic: bool = True) -> int:
    """Compile every repeated block in place (state-dict keys unchanged); returns how many.

    `graph_bound`: the most graphs a block may compile (block variants x batch shapes x train/eval)
    before torch falls back to running it eagerly. `dynamic=False`: a graph per batch shape.
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, graph_bound)
    # No "duck sizing": a source and a target of equal width would otherwise tie their dims in the graph
    # and recompile at the first batch where they differ.
    torch.fx.experimental._config.use_duck_shape = False
    blocks = [b for blocks in block_lists(model) for b in blocks]
    for block in blocks:
        block.compile(dynamic=dynamic)
    return len(blocks)
