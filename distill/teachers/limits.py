"""Client-side pacing: requests- and tokens-per-minute budgets, and retry back-off."""
from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping


class Bucket:
    """A token bucket refilled continuously at `per_minute / 60` per second, holding at most a
    minute's worth. `take(k)` waits until k units are there; `give(k)` returns unused units."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, k: float) -> None:
        k = min(k, self.capacity)  # a request larger than the whole budget still gets through
        async with self._lock:  # first come, first served: nobody overtakes a large request
            self._refill()
            while self.level < k:
                await asyncio.sleep((k - self.level) / self.rate)
                self._refill()
            self.level -= k

    def give(self, k: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + k)


class RateLimiter:
    """Requests per minute and tokens per minute (either may be None: unlimited).

    Tokens are reserved up front as OpenAI counts them (prompt estimate + max_tokens x n) and the
    unused part is given back once the usage is known."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self.requests = Bucket(rpm) if rpm else None
        self.tokens = Bucket(tpm) if tpm else None

    async def acquire(self, tokens: int) -> None:
        if self.requests:
            await self.requests.take(1)
        if self.tokens:
            await self.tokens.take(tokens)

    def settle(self, reserved: int, used: int) -> None:
        if self.tokens and used < reserved:
            self.tokens.give(reserved - used)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0, hint: float | None = None) -> float:
    """Delay before retry `attempt` (0-based): full-jitter exponential back-off, but never less
    than what the server asked for."""
    delay = random.uniform(0, min(cap, base * 2**attempt))
    return max(delay, hint) if hint is not None else delay
