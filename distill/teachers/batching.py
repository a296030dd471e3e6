"""Concurrent calls gathered into batches for a function that runs in a worker thread (a local
model's `generate`, the sandbox's `run_cells`), so that the event loop goes on meanwhile."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`await batcher(item)`: `run` gets up to `size()` items of one `key` at a time, in a thread,
    and returns one result per item; an exception goes to every caller of its batch."""

    def __init__(self, run: Callable[[list[T]], list[R]], size: Callable[[], int],
                 key: Callable[[T], Hashable] = lambda item: None):
        self.run, self.size, self.key = run, size, key
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let the other callers of this tick enqueue first
            key = self.key(self._pending[0][0])
            batch = [p for p in self._pending if self.key(p[0]) == key][: self.size()]
            taken = {id(future) for _, future in batch}
            self._pending = [p for p in self._pending if id(p[1]) not in taken]
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to the callers, who decide
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker
