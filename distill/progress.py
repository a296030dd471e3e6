"""Rich progress bars and tables shared by the commands."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break a line inside one


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; draws a bar on stderr when enabled (and a terminal is attached)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not enabled, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@asynccontextmanager
async def live_table(render: Callable[[], RenderableType], *, enabled: bool, period: float = 0.25,
                     refresh: Callable[[], None] | None = None) -> AsyncIterator[None]:
    """Redraw `render()` from the event loop (so it never reads counters mid-update); `refresh`
    runs before each redraw and once at the end."""
    if not enabled:
        yield
        return

    def draw() -> RenderableType:
        if refresh is not None:
            refresh()
        return render()

    with Live(draw(), console=console, auto_refresh=False, transient=False) as view:
        async def tick() -> None:
            while True:
                await asyncio.sleep(period)
                view.update(draw(), refresh=True)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            view.update(draw(), refresh=True)
