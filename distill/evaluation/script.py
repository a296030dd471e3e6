"""Forced tokens: random-weight models driven through tool-integrated rounds or stopped at chosen
lengths (benchmarks, tests).

`Script(ids)`: `ids[r % len(ids), g]`, where not -1, is the `g`-th token that sequence `r` generates
(the outputs fed back do not count); -1 leaves the model's own choice. `Lengths(stops, eos)`:
sequence `r` generates `stops[r]` tokens of the model's and then EOS (barred before). Both serve as
`GreedyLoop.hook` (inside the decode step, on the device; `st.item` is the sequence a row holds) and,
through `processor`, as a logits processor of `generate` or `tools.generate_rounds`, so that every
path is forced alike.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class _Forcing:
    """A rule `_force(logits, sequences, generated so far)` as a loop hook and as a logits processor."""

    def __init__(self) -> None:
        self._on: dict[Any, Any] = {}  # the rule's tensors on each device

    def _tensors(self, device: Any) -> Any:
        if device not in self._on:  # copied once, before a CUDA graph captures the step
            self._on[device] = self._move(device)
        return self._on[device]

    def _move(self, device: Any) -> Any:
        raise NotImplementedError

    def _force(self, logits: Any, rows: Any, gen: Any) -> Any:
        raise NotImplementedError

    def __call__(self, st: SimpleNamespace, logits: Any) -> Any:
        return self._force(logits, st.item, st.gen)

    def processor(self) -> tuple[Any, Any]:
        """(logits processor, `on_round(sequences, their generated tokens, the round's input length)`)
        for `generate` (one round) and `tools.generate_rounds`."""
        import torch

        follow: dict[str, Any] = {}

        def on_round(rows: list[int], generated: list[int], start: int) -> None:
            follow.update(rows=torch.tensor(rows), generated=torch.tensor(generated), start=start)

        def process(input_ids: Any, scores: Any) -> Any:
            gen = follow["generated"].to(scores.device) + (input_ids.shape[1] - follow["start"])
            return self._force(scores, follow["rows"].to(scores.device), gen)

        return process, on_round


class Script(_Forcing):
    def __init__(self, ids: Any):
        super().__init__()
        self.ids = ids

    def _move(self, device: Any) -> Any:
        return self.ids.to(device)

    def _force(self, logits: Any, rows: Any, gen: Any) -> Any:
        import torch

        table = self._tensors(logits.device)
        forced = table[rows % table.shape[0], gen.clamp(max=table.shape[1] - 1)]
        one = torch.full_like(logits, float("-inf")).scatter_(1, forced.clamp(min=0)[:, None], 0.0)
        return torch.where(forced[:, None] >= 0, one, logits)


class Lengths(_Forcing):
    def __init__(self, stops: Any, eos: int):
        super().__init__()
        self.stops, self.eos = stops, eos

    def _move(self, device: Any) -> Any:
        import torch

        return self.stops.to(device), torch.tensor([self.eos], device=device)

    def _force(self, logits: Any, rows: Any, gen: Any) -> Any:
        import torch

        stops, eos = self._tensors(logits.device)
        barred = logits.index_fill(1, eos, float("-inf"))
        only = torch.full_like(logits, float("-inf")).index_fill(1, eos, 0.0)
        return torch.where((gen == stops[rows])[:, None], only, barred)
