"""The teacher interface: a `Request` (one question x thought) in, `n` `Completion`s out.

Backends (OpenAI-compatible servers, local transformers or vLLM models, the simulated world
teacher) implement `Teacher`; `distill.generate` only ever talks to this protocol.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Request:  # one question x thought; the teacher returns n samples
    messages: list[dict[str, str]]  # chat messages (system, few-shot turns, user question)
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] | None = None
    logprobs: int = 0  # > 0: also the top-k log-probabilities of every generated token (offline kd)
    # The answer so far, which the teacher continues (tool-integrated reasoning: the trace up to the
    # output of its last code cell); every backend appends it to the prompt as the assistant's text.
    prefix: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # includes "question", "thought", "id"


# Request.meta["task"] of a question-writing request (`distill synth`); other requests solve.
WRITE_QUESTION = "write-question"


@dataclass
class Completion:
    text: str | None  # None on failure
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # failure class, e.g. "http-500", "malformed", "truncated"
    logprobs: dict[str, Any] | None = None  # asked for with Request.logprobs: `distill.logprobs.TopK.encode()`


@runtime_checkable
class Teacher(Protocol):
    name: str

    async def complete(self, request: Request) -> list[Completion]: ...

    async def aclose(self) -> None: ...


class TeacherError(RuntimeError):
    """A failure no retry can fix (bad key, unknown model, missing backend): the run stops."""


# Failure classes that are transient: the request was not answered, so a later run retries it.
# Everything else (a 200 with malformed JSON, a truncated answer, a 400) was answered and paid.
TRANSIENT = ("http-429", "http-5xx", "timeout", "connection")


HINTS = {"connection": "the server cannot be reached (check --base-url and the network)",
         "timeout": "the server did not answer in time (--timeout)",
         "http-401": "the API key was refused (check --api-key / $OPENAI_API_KEY)",
         "http-403": "access denied (the key lacks the rights for this model)",
         "http-404": "unknown model or endpoint (check the model name and --base-url)",
         "http-429": "rate limited on every retry (lower --concurrency or set --rpm/--tpm)"}


def is_teacher_failure(status: str | None) -> bool:
    """The request got no answer at all (unreachable, refused, rate limited, ...); an answer that
    was cut short or malformed was still answered (and paid for): its record says why."""
    return status is not None and (status in TRANSIENT or status.startswith("http-"))


def is_transient(error: str | None) -> bool:
    return error is not None and (error in TRANSIENT or error.startswith("http-5"))


def finish(text: str | None, finish_reason: str | None, prompt_tokens: int = 0, completion_tokens: int = 0) -> Completion:
    """A completion with `error` set for answers that cannot be used as they are."""
    error = None
    if not isinstance(text, str):
        error, text = "malformed", None
    elif finish_reason == "length":
        error = "truncated"
    elif not text.strip():
        error = "empty"
    return Completion(text, finish_reason, prompt_tokens, completion_tokens, error)
