"""Teachers behind an OpenAI-compatible chat/completions endpoint (OpenAI, vLLM, SGLang, TGI,
llama.cpp, Ollama, ...), through the official `openai` async client over its aiohttp transport
(`openai.DefaultAioHttpClient`, the `openai[aiohttp]` extra).

Requests go through the client's generic `post` (its documented route for raw bodies): the typed
`chat.completions.create` spends ~10 ms of CPU per call converting a few-shot prompt's messages,
which alone would cap a 2-core machine far below the 300+ requests/s a local server can take.
The client's own retries are switched off: we retry here, so that every attempt passes the rate
limiter, failures are counted by class, and a failure after the last retry becomes a failed
`Completion` rather than an exception.

A request that continues an answer (`Request.prefix`, the rounds of tool-integrated reasoning)
ends its messages with an assistant message holding the prefix. Plain OpenAI-compatible servers
take that as a finished turn and answer anew, which the caller appends to the prefix all the same;
vLLM and SGLang continue the prefix itself when asked (`continue_final_message`, sent with such
requests; their `--continue-final-message` flag).

`base_url` may name several servers (`URL1,URL2` or `@FILE`): `distill.teachers.fleet` then spreads
the attempts over them and moves a dead server's requests to the others.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import numpy as np

from distill.logprobs import TopK
from distill.teachers.base import Completion, Request, TeacherError, finish
from distill.teachers.fleet import Fleet, parse_base_urls, server_failed
from distill.teachers.limits import RateLimiter, backoff, retry_after

FATAL = (401, 403, 404)  # bad key or unknown model: every other request would fail the same way


class OpenAITeacher:
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        rpm: float | None = None,
        tpm: float | None = None,
        n_mode: str = "auto",  # auto: ask for n, fall back to n calls when the server ignores it; native; split
        extra_body: dict[str, Any] | None = None,
        concurrency: int | None = None,  # of the run: each of several servers gets its share in flight
        continue_final_message: bool = False,  # vLLM/SGLang: continue a prefix (not answer after it)
    ):
        import openai

        if n_mode not in ("auto", "native", "split"):
            raise TeacherError(f"n_mode must be auto, native or split, not {n_mode!r}")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if not base_url:
                raise TeacherError("no API key: set OPENAI_API_KEY or pass --api-key (or --base-url for a local server)")
            api_key = "EMPTY"  # local servers usually ignore the key, but the client insists on one
        self.name = f"openai:{model}"
        self.model = model
        self.max_retries = max_retries
        self.n_mode = n_mode
        self.extra_body = extra_body
        self.continue_final_message = continue_final_message
        self.limiter = RateLimiter(rpm, tpm)
        self.retries: Counter[str] = Counter()  # failed attempts by class, retried or not
        self._errors = openai
        httpx = _httpx()
        self._response_type = httpx.Response
        self._timeouts = (asyncio.TimeoutError, httpx.TimeoutException)
        urls: list[str | None] = list(parse_base_urls(base_url)) if base_url else [None]
        # The SDK's aiohttp transport: httpx's own connection pool and HTTP/1.1 parser, pure Python, cost
        # about 0.7 ms more CPU per request, a fifth of a core at 320 requests/s (benchmarks/results/).
        self.fleet = Fleet(urls, lambda url: openai.AsyncOpenAI(
            base_url=url, api_key=api_key, timeout=timeout, max_retries=0, http_client=openai.DefaultAioHttpClient(),
        ), concurrency)

    async def complete(self, request: Request) -> list[Completion]:
        if request.n == 1 or self.n_mode == "native":
            return await self._call(request, request.n)
        if self.n_mode == "split":
            return await self._split(request, request.n)
        got = await self._call(request, request.n)
        if len(got) < request.n and all(c.error is None for c in got):
            self.n_mode = "split"  # the server ignored `n`: from now on, one call per sample
            got += await self._split(request, request.n - len(got))
        return got

    async def _split(self, request: Request, n: int) -> list[Completion]:
        parts = await asyncio.gather(*(self._call(request, 1) for _ in range(n)))
        return [c for part in parts for c in part]

    async def _call(self, request: Request, n: int) -> list[Completion]:
        errors = self._errors
        messages = request.messages + ([{"role": "assistant", "content": request.prefix}] if request.prefix else [])
        reserved = sum(len(m.get("content", "")) for m in messages) // 4 + request.max_tokens * n
        body: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=request.temperature,
            top_p=request.top_p, max_tokens=request.max_tokens, **(self.extra_body or {}),
        )
        if request.prefix and self.continue_final_message:
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        if n > 1:
            body["n"] = n
        if request.stop:
            body["stop"] = request.stop
        if request.logprobs:
            # Token ids, not strings, are what a student sharing the tokenizer can train on (vLLM's extension).
            body |= {"logprobs": True, "top_logprobs": request.logprobs, "return_tokens_as_token_ids": True}
        error, attempt, moved = "connection", 0, set()
        while True:
            await self.limiter.acquire(reserved)
            server, probe = await self.fleet.acquire()
            got, error, hint = None, None, None
            try:
                response = await server.client.post("/chat/completions", cast_to=self._response_type, body=body)
                got = parse_choices(await response.aread(), n, logprobs=request.logprobs)
            except errors.APIStatusError as exc:
                code = exc.status_code
                error = f"http-{code}"
                if code in FATAL:
                    where = f" at {server.url}" if len(self.fleet) > 1 else ""
                    raise TeacherError(f"{self.name}{where}: HTTP {code}: {str(exc)[:200]}") from None
                if code != 429 and code < 500 and code != 408:
                    self.retries[error] += 1
                    return [Completion(None, error=error) for _ in range(n)]  # e.g. 400: retrying will not help
                hint = retry_after(exc.response.headers)
            except errors.APIConnectionError as exc:  # APITimeoutError is one too
                error = _transport_failure(exc, self._timeouts)
            finally:  # anything else that went wrong (neither an answer nor a known failure) counts as the server's
                self.fleet.release(server, probe, error or (None if got is not None else "connection"))
            if got is not None:
                self.limiter.settle(reserved, sum(c.prompt_tokens + c.completion_tokens for c in got))
                return got
            self.retries[error] += 1
            self.limiter.settle(reserved, 0)
            if server_failed(error) and server.url not in moved and self.fleet.others_up(server):
                moved.add(server.url)  # the server failed, not the request: on to another at once, not a retry
                continue
            if attempt >= self.max_retries:
                return [Completion(None, error=error) for _ in range(n)]
            await asyncio.sleep(backoff(attempt, hint=hint))
            attempt += 1

    def status(self) -> str | None:
        """Per server (when there are several): attempts, answers, failures, health."""
        return self.fleet.summary() if len(self.fleet) > 1 else None

    async def aclose(self) -> None:
        await self.fleet.aclose()


def _httpx() -> Any:
    """The HTTP library the installed client is built on: httpx2 in newer ones, httpx before (both can
    be installed, so ask the client's own module rather than try imports)."""
    from openai import _base_client

    return getattr(_base_client, "httpx2", None) or _base_client.httpx


def _transport_failure(exc: BaseException, timeouts: tuple[type[BaseException], ...]) -> str:
    """"timeout" or "connection" from the root cause of the client's error: the SDK's aiohttp
    transport reports a refused, reset or dropped connection as a connect *timeout*."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return "timeout" if isinstance(exc, timeouts) else "connection"


def parse_choices(body: bytes, n: int, *, logprobs: int = 0) -> list[Completion]:
    """Completions from a chat/completions response body; a body we cannot read yields `n`
    failures marked "malformed". Usage is reported per response, so the prompt tokens go to the
    first choice and the completion tokens are shared out evenly: the sums stay exact.
    `logprobs`: each choice's `logprobs.content` is kept as a `TopK` (a TeacherError when the server
    does not return them, or returns token strings instead of ids)."""
    try:
        data = json.loads(body)
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            raise TypeError
        usage = data.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, KeyError, TypeError, AttributeError):
        return [Completion(None, error="malformed") for _ in range(n)]
    share, extra = divmod(completion, len(choices))
    out = []
    for i, choice in enumerate(choices):
        try:
            text, reason = choice["message"]["content"], choice.get("finish_reason")
        except (KeyError, TypeError, AttributeError):
            text, reason = None, None
        done = finish(text, reason, prompt if i == 0 else 0, share + (extra if i == 0 else 0))
        if logprobs and done.error is None:
            done.logprobs = _topk(choice, logprobs)
        out.append(done)
    return out


def _token_id(token: Any) -> int:
    if isinstance(token, str) and token.startswith("token_id:") and token[9:].isdigit():
        return int(token[9:])
    raise TeacherError(f"the server returned the token {token!r}, not an id: --logprobs needs token ids "
                       "(vLLM: return_tokens_as_token_ids, sent with the request; a server that ignores it cannot be used)")


def _topk(choice: dict[str, Any], k: int) -> dict[str, Any]:
    """The choice's `logprobs.content` as a `TopK`: sampled ids, top-k ids and log-probs per token."""
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list):
        raise TeacherError("--logprobs: the server returned no logprobs.content (does it support logprobs/top_logprobs?)")
    ids, top_ids, top_lp = [], [], []
    for entry in content:
        alternatives = sorted(entry.get("top_logprobs") or [], key=lambda a: -float(a["logprob"]))[:k]
        row = [(_token_id(a["token"]), float(a["logprob"])) for a in alternatives]
        row += [(0, float("-inf"))] * (k - len(row))  # fewer than k alternatives: empty slots
        ids.append(_token_id(entry["token"]))
        top_ids.append([i for i, _ in row])
        top_lp.append([v for _, v in row])
    return TopK(np.asarray(ids), np.asarray(top_ids).reshape(-1, k), np.asarray(top_lp).reshape(-1, k)).encode()
