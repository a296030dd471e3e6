"""Rich progress bars and tables shared by the commands."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break a line inside one
# Seconds between plain progress lines when stderr is not a terminal (a pipe, a log file).
PLAIN_INTERVAL = float(os.environ.get("DISTILL_PROGRESS_INTERVAL", "30"))


def eta(done: float, total: float, elapsed: float) -> str:
    """`ETA 1:02:03` from the rate so far (`ETA -` before the first unit is done)."""
    if done <= 0 or total <= done:
        return "ETA -" if done <= 0 else "ETA 0:00:00"
    left = int(elapsed / done * (total - done))
    return f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"


@contextmanager
def plain_lines(line: Callable[[], str], *, enabled: bool, period: float | None = None) -> Iterator[None]:
    """Where no terminal shows a live display (`| tee`, a log file): print `line()` every `period`
    seconds from a thread, and once at the end."""
    if not enabled or console.is_terminal:
        yield
        return
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(PLAIN_INTERVAL if period is None else period):
            console.print(line(), highlight=False)

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        console.print(line(), highlight=False)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; draws a bar on stderr when enabled (and a terminal is attached)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    started = time.monotonic()
    with Progress(*columns, console=console, disable=not enabled or not console.is_terminal, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def line() -> str:
            done = progress.tasks[0].completed
            return f"{description}: {done:.0f}/{total} ({done / max(total, 1):.0%}), " \
                   f"{time.monotonic() - started:.0f} s, {eta(done, total, time.monotonic() - started)}"

        with plain_lines(line, enabled=enabled):
            yield lambda n: progress.advance(task, n)


@asynccontextmanager
async def live_table(render: Callable[[], RenderableType], *, enabled: bool, period: float = 0.25,
                     refresh: Callable[[], None] | None = None, line: Callable[[], str] | None = None) -> AsyncIterator[None]:
    """Redraw `render()` from the event loop (so it never reads counters mid-update); `refresh`
    runs before each redraw and once at the end. Without a terminal, `line()` is printed at a
    steady interval instead (the table once at the end)."""
    if not enabled:
        yield
        return
    if not console.is_terminal:
        with plain_lines(line or (lambda: ""), enabled=line is not None):
            yield
        if refresh is not None:
            refresh()
        console.print(render())
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
