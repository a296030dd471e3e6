"""The teacher's top-k log-probabilities per generated token, stored compactly.

A record written by `distill generate --logprobs K` carries them in `meta["logprobs"]`:
`{"k": K, "ids": b64(int32[T]), "top_ids": b64(int32[T*K]), "top_logprobs": b64(float16[T*K])}`,
one row per generated token (the sampled token `ids[t]`, and the K most likely tokens at step t
with their log-probabilities under the teacher at temperature 1). `distill mix` carries them into
the dataset's Arrow columns (`KD_COLUMNS`) and `distill train --objective kd` trains on them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

META_KEY = "logprobs"
KD_COLUMNS = ("kd_ids", "kd_top_ids", "kd_top_logprobs")  # list<int32>, list<int32> (T*K), list<float16> (T*K)


@dataclass
class TopK:
    """Per generated token: the sampled id, and the teacher's top-k ids and log-probabilities."""

    ids: np.ndarray  # int32 [T]
    top_ids: np.ndarray  # int32 [T, K]
    top_logprobs: np.ndarray  # float16 [T, K]

    @property
    def k(self) -> int:
        return int(self.top_ids.shape[1])

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int32).reshape(-1)
        k = int(np.asarray(self.top_ids).shape[-1]) if np.asarray(self.top_ids).size else 1
        self.top_ids = np.asarray(self.top_ids, dtype=np.int32).reshape(len(self.ids), k)
        self.top_logprobs = np.asarray(self.top_logprobs, dtype=np.float16).reshape(len(self.ids), k)

    def encode(self) -> dict[str, Any]:
        return {"k": self.k, "ids": _b64(self.ids), "top_ids": _b64(self.top_ids), "top_logprobs": _b64(self.top_logprobs)}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> "TopK":
        """From `meta["logprobs"]`; a ValueError names what is wrong with it."""
        try:
            k = int(data["k"])
            ids = np.frombuffer(base64.b64decode(data["ids"]), dtype=np.int32)
            top_ids = np.frombuffer(base64.b64decode(data["top_ids"]), dtype=np.int32)
            top_lp = np.frombuffer(base64.b64decode(data["top_logprobs"]), dtype=np.float16)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"meta.logprobs: unreadable ({exc.__class__.__name__}: {exc})") from None
        if k < 1 or top_ids.size != ids.size * k or top_lp.size != ids.size * k:
            raise ValueError(f"meta.logprobs: {ids.size} tokens, k={k}, but {top_ids.size} ids / {top_lp.size} values")
        return cls(ids, top_ids.reshape(-1, k), top_lp.reshape(-1, k))

    def columns(self) -> dict[str, list[Any]]:
        """The Arrow columns of one dataset row (flattened [T*K])."""
        return {"kd_ids": self.ids.tolist(), "kd_top_ids": self.top_ids.reshape(-1).tolist(),
                "kd_top_logprobs": self.top_logprobs.reshape(-1).astype(np.float32).tolist()}

    @classmethod
    def from_columns(cls, ids: list[int], top_ids: list[int], top_logprobs: list[float]) -> "TopK":
        k = len(top_ids) // max(len(ids), 1) or 1
        return cls(np.asarray(ids), np.asarray(top_ids).reshape(-1, k), np.asarray(top_logprobs).reshape(-1, k))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
