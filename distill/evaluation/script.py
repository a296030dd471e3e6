"""Scripted tokens: random-weight models driven through tool-integrated rounds (benchmarks, tests).

`Script(ids)`: `ids[r % len(ids), g]`, where not -1, is the `g`-th token that row `r` of a batch
generates (the outputs fed back do not count); -1 leaves the model's own choice. It serves as
`GreedyLoop.hook` (inside the decode step, on the device) and, through `processor`, as a logits
processor of `tools.generate_rounds`, so that both paths are forced alike.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class Script:
    def __init__(self, ids: Any):
        self.ids = ids
        self._on: dict[Any, Any] = {}  # the table on each device

    def _force(self, logits: Any, rows: Any, gen: Any) -> Any:
        import torch

        if logits.device not in self._on:  # copied once, before a CUDA graph captures the step
            self._on[logits.device] = self.ids.to(logits.device)
        table = self._on[logits.device]
        forced = table[rows % table.shape[0], gen.clamp(max=table.shape[1] - 1)]
        one = torch.full_like(logits, float("-inf")).scatter_(1, forced.clamp(min=0)[:, None], 0.0)
        return torch.where(forced[:, None] >= 0, one, logits)

    def __call__(self, st: SimpleNamespace, logits: Any) -> Any:
        import torch

        return self._force(logits, torch.arange(logits.shape[0], device=logits.device), st.gen)

    def processor(self) -> tuple[Any, Any]:
        """(logits processor, `on_round` callback) for `tools.generate_rounds`."""
        import torch

        follow: dict[str, Any] = {}

        def on_round(rows: list[int], generated: list[int], start: int) -> None:
            follow.update(rows=torch.tensor(rows), generated=torch.tensor(generated), start=start)

        def process(input_ids: Any, scores: Any) -> Any:
            gen = follow["generated"].to(scores.device) + (input_ids.shape[1] - follow["start"])
            return self._force(scores, follow["rows"].to(scores.device), gen)

        return process, on_round
