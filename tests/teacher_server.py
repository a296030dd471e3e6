"""A small OpenAI-compatible chat/completions server for tests and benchmarks.

It answers from scripted rationales (question -> thought -> list of rationales, cycled by sample),
honours `stop` (the text is cut before the first stop string, as OpenAI does) and continues an
answer given as a trailing assistant message: a tool-integrated (TIR) rationale is scripted whole,
with its ```output blocks; a request whose prefix holds k output blocks gets the script's text
after its k-th output block (up to the next stop), and `{output}` in it becomes the last output
the prefix holds (so an answer shows the output the client really appended). It can inject faults (429 with Retry-After, 500, slow responses, dropped connections, malformed
JSON, truncated answers) at given rates or in a given order, and counts requests.

In tests: `with TeacherServer(script) as server: ... server.url ...` (runs in a thread).
From a shell (benchmarks): `python tests/teacher_server.py --script s.json --latency 0.2`
prints `READY <url>` once listening.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

FAULTS = ("429", "500", "slow", "drop", "malformed", "truncated")
CUES = {"cot": "Let's think step by step", "pot": "break down the code", "eot": "System of linear equations",
        "tir": "run code as we go"}
_QUESTION = re.compile(r"Question:\s*(.*?)\n", re.DOTALL)
_OUTPUT = re.compile(r"```output[ \t]*\n(.*?)```[ \t]*\n?", re.DOTALL)

Script = dict[str, dict[str, list[str]]]  # question -> thought -> rationales


@dataclass
class Faults:
    rates: dict[str, float] = field(default_factory=dict)  # fault -> probability per request
    sequence: list[str] = field(default_factory=list)  # faults for the first requests, in order ("" = none)
    retry_after: str = "0"  # Retry-After header of injected 429s
    slow_s: float = 5.0  # delay of a "slow" response (longer than the client's timeout)
    seed: int = 0


def _skeleton(text: str) -> str:
    """A trace without its outputs and white space: what the writer (not the tool) wrote."""
    return re.sub(r"\s+", "", _OUTPUT.sub("", text))


def continuation(options: list[str], prefix: str) -> str | None:
    """The rest of the scripted trace that `prefix` (k output blocks in) continues, or None."""
    outputs = _OUTPUT.findall(prefix)
    for option in options:
        blocks = list(_OUTPUT.finditer(option))
        if len(blocks) >= len(outputs) and _skeleton(option).startswith(_skeleton(prefix)):
            rest = option[blocks[len(outputs) - 1].end():] if outputs else option
            return rest.replace("{output}", outputs[-1].strip() if outputs else "")
    return None


def parse_question(messages: list[dict[str, str]]) -> tuple[str, str]:
    """(question, thought) from the last user turn, which follows the thought's cue template."""
    last = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
    m = _QUESTION.search(last + "\n")
    question = m.group(1).strip() if m else last.strip()
    thought = next((t for t, cue in CUES.items() if cue in last), "cot")
    return question, thought


class TeacherServer:
    def __init__(self, script: Script | None = None, *, latency: float = 0.0, faults: Faults | None = None,
                 supports_n: bool = True, honours_stop: bool = True, host: str = "127.0.0.1", port: int = 0):
        self.script = script or {}
        self.latency = latency
        self.faults = faults or Faults()
        self.supports_n = supports_n
        self.honours_stop = honours_stop
        self.host, self.port = host, port
        self.requests = 0  # every request received
        self.in_flight = self.peak_in_flight = 0  # requests being answered now / at most at once
        self.answered: Counter[str] = Counter()  # request body hash -> successful answers
        self.received: Counter[str] = Counter()  # request body hash -> requests
        self.asked: Counter[tuple[str, str]] = Counter()  # (question, thought) -> requests
        self.rounds: Counter[tuple[str, int]] = Counter()  # (question, output blocks in the prefix) -> requests
        self.tokens: Counter[str] = Counter()  # prompt_tokens / completion_tokens reported, in all
        self.prefixes: list[str] = []  # the trailing assistant message of each continuing request
        self.continued = 0  # requests asking to continue the final message (vLLM's continue_final_message)
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        self._sequence = list(self.faults.sequence)
        self._samples: Counter[tuple[str, str]] = Counter()  # per question x thought, to cycle the script
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _fault(self) -> str:
        if self._sequence:
            return self._sequence.pop(0)
        roll, acc = self._rng.random(), 0.0
        for fault, rate in self.faults.rates.items():
            acc += rate
            if roll < acc:
                return fault
        return ""

    def _logprobs(self, text: str, k: int, as_ids: bool) -> list[dict[str, Any]]:
        """vLLM's shape: per token (here a UTF-8 byte, id = byte + 3), its log-prob and the top-k: the token
        itself at 0.7 and the next ids sharing 0.2 (so 0.1 is left for the rest of the vocabulary)."""
        def name(i: int) -> str:
            return f"token_id:{i}" if as_ids else chr(max(i - 3, 32))

        content = []
        for byte in text.encode():
            i = byte + 3
            top = [(i, math.log(0.7))] + [(3 + (byte + j) % 256, math.log(0.2 / max(k - 1, 1))) for j in range(1, k)]
            content.append({"token": name(i), "logprob": top[0][1],
                            "top_logprobs": [{"token": name(t), "logprob": v} for t, v in top[:k]]})
        return content

    def _answer(self, question: str, thought: str, prefix: str = "", stop: list[str] | None = None) -> str:
        options = self.script.get(question, {}).get(thought) or ["I do not know."]
        text = continuation(options, prefix) if prefix else self._next(question, thought, options)
        if text is None:
            text = "I do not know."
        cuts = [i for s in (stop or []) if self.honours_stop and (i := text.find(s)) >= 0]
        return text[: min(cuts)] if cuts else text

    def _next(self, question: str, thought: str, options: list[str]) -> str:
        i = self._samples[question, thought]
        self._samples[question, thought] += 1
        return options[i % len(options)]

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        key = hashlib.sha256(raw).hexdigest()
        self.requests += 1
        self.received[key] += 1
        body = json.loads(raw)
        question, thought = parse_question(body["messages"])
        last = body["messages"][-1]
        prefix = last["content"] if last.get("role") == "assistant" else ""
        if prefix:
            self.prefixes.append(prefix)
        self.continued += bool(body.get("continue_final_message"))
        self.asked[question, thought] += 1
        self.rounds[question, len(_OUTPUT.findall(prefix))] += 1
        fault = self._fault()
        if fault:
            self.injected[fault] += 1
        await asyncio.sleep(self.faults.slow_s if fault == "slow" else self.latency)
        if fault == "429":
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429,
                                     headers={"Retry-After": self.faults.retry_after})
        if fault == "500":
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # connection reset with no response
            return web.Response()
        if fault == "malformed":
            return web.Response(text='{"id": "x", "choices": [{"message": {"content": "The ans', content_type="application/json")
        n = int(body.get("n") or 1) if self.supports_n else 1
        choices = []
        for i in range(n):
            text, reason = self._answer(question, thought, prefix, body.get("stop")), "stop"
            if fault == "truncated":
                text, reason = text[: len(text) // 2], "length"
            choice = {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": self._logprobs(text, int(body.get("top_logprobs") or 0),
                                                                bool(body.get("return_tokens_as_token_ids")))}
            choices.append(choice)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        completion_tokens = sum(len(c["message"]["content"]) for c in choices) // 4
        self.answered[key] += 1
        self.tokens.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return web.json_response({
            "id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> "TeacherServer":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "TeacherServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--script", help="JSON file: question -> thought -> [rationales]")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fault", action="append", default=[], help="FAULT=RATE, e.g. 500=0.05")
    args = ap.parse_args(argv)
    script = json.load(open(args.script, encoding="utf-8")) if args.script else {}
    rates = {f: float(r) for f, r in (x.split("=") for x in args.fault)}
    server = TeacherServer(script, latency=args.latency, faults=Faults(rates=rates), port=args.port)

    async def run() -> None:
        await server._start()
        print(f"READY {server.url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
