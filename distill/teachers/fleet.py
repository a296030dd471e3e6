"""A fleet of OpenAI-compatible servers behind one teacher (`--base-url URL1,URL2,...` or `@FILE`).

Each server holds at most its share of the run's concurrency in flight (`slots`); a request goes
to the healthy server with the most free slots. A server that fails at the transport level
(connection refused or reset, timeout, HTTP 5xx) is marked down: the request moves on to another
server, and the down one is probed again by a single request after a back-off that doubles with
each failed probe (1 s, 2 s, ... 30 s); an answer marks it healthy. When every server is down the
requests go to them anyway and retry with their own back-off, as against a single server.

A lone server is never marked down (there is nowhere else to send its requests).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from distill.teachers.base import TeacherError

SERVER_DOWN = ("connection", "timeout")  # plus every http-5xx: the server, not the request, is at fault


def server_failed(error: str | None) -> bool:
    return error is not None and (error in SERVER_DOWN or error.startswith("http-5"))


def parse_base_urls(spec: str) -> list[str]:
    """`URL`, `URL1,URL2,...` or `@FILE` (one URL a line; blank lines and `#` comments skipped)."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TeacherError(f"--base-url {spec}: cannot read {path}: {exc.strerror}") from None
        entries = [(f"{path}:{i}", line.split("#", 1)[0].strip()) for i, line in enumerate(lines, 1)]
        entries = [(where, url) for where, url in entries if url]
        if not entries:
            raise TeacherError(f"--base-url {spec}: {path} lists no URL")
    else:
        entries = [(f"--base-url item {i}", url.strip()) for i, url in enumerate(spec.split(","), 1)]
    urls = []
    for where, url in entries:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TeacherError(f"{where}: {url!r} is not an http(s) URL")
        if url in urls:
            raise TeacherError(f"{where}: {url} is listed twice")
        urls.append(url)
    return urls


@dataclass
class Server:
    url: str | None  # None: the client's default (OpenAI)
    client: Any  # the HTTP client for this server (an openai.AsyncOpenAI)
    slots: int | None = None  # most requests in flight; None: no cap of its own
    in_flight: int = 0
    healthy: bool = True
    probing: bool = False  # a down server's single probe request is in flight
    down_until: float = 0.0  # when a down server may be probed
    strikes: int = 0  # failures in a row since it was last healthy (sets the back-off)
    sent: int = 0  # attempts sent to it
    answered: int = 0  # answers received from it (paid)
    failed: Counter[str] = field(default_factory=Counter)  # failed attempts by class

    def free(self) -> float:
        return math.inf if self.slots is None else self.slots - self.in_flight


class Fleet:
    """Picks a server for each attempt and tracks the servers' health."""

    probe_base, probe_cap = 1.0, 30.0  # seconds before a down server is probed: base x 2^(strikes-1), capped

    def __init__(self, urls: list[str | None], make_client: Callable[[str | None], Any], concurrency: int | None = None):
        slots = math.ceil(concurrency / len(urls)) if concurrency and len(urls) > 1 else None
        self.servers = [Server(url, make_client(url), slots) for url in urls]
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.servers)

    def _choose(self, now: float) -> tuple[Server | None, bool]:
        """(server, is a probe), or (None, _) when every candidate is full."""
        for s in self.servers:
            if not s.healthy and not s.probing and s.down_until <= now:
                return s, True
        up = [s for s in self.servers if s.healthy] or [s for s in self.servers if not s.probing]
        open_ = [s for s in up if s.free() > 0]
        if not open_:
            return None, False
        return max(open_, key=lambda s: (s.free(), -s.in_flight, -s.sent)), False

    async def acquire(self) -> tuple[Server, bool]:
        """A slot on the best server now (waits while all are full); returns it and whether it is a probe."""
        while True:
            now = time.monotonic()
            server, probe = self._choose(now)
            if server is not None:
                server.in_flight += 1
                server.sent += 1
                server.probing = server.probing or probe
                return server, probe
            wake = [s.down_until - now for s in self.servers if not s.healthy and not s.probing]
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, min(wake)) if wake else None)
            except asyncio.TimeoutError:
                pass

    def release(self, server: Server, probe: bool, error: str | None) -> None:
        """The attempt on `server` ended: answered (`error` None), refused by a live server, or failed."""
        server.in_flight -= 1
        if probe:
            server.probing = False
        if error is None:
            server.answered += 1
        else:
            server.failed[error] += 1
        if not server_failed(error):
            server.healthy, server.strikes = True, 0
        elif len(self.servers) > 1 and (server.healthy or probe):  # a new failure, not one more of the same outage
            server.healthy = False
            server.strikes += 1
            server.down_until = time.monotonic() + min(self.probe_cap, self.probe_base * 2 ** (server.strikes - 1))
        self._changed.set()

    def others_up(self, server: Server) -> bool:
        return any(s.healthy for s in self.servers if s is not server)

    def summary(self) -> str:
        """One line per server: attempts, answers, failures, health."""
        return "\n".join(
            f"{s.url}: {s.sent} sent, {s.answered} answered"
            + (", failed " + ", ".join(f"{k} {v}" for k, v in s.failed.most_common()) if s.failed else "")
            + ("" if s.healthy else " (down)")
            for s in self.servers)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.client.close() for s in self.servers))
