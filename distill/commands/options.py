"""Click options that several commands share (one definition, one spelling)."""
from __future__ import annotations

from typing import Any

import click

from distill.decontam import DEFAULT_EVAL_SETS
from distill.thoughts import parse_thoughts


def thoughts_option(default: tuple[str, ...] | None = None, help: str = "") -> Any:
    """`--thoughts pot,eot,cot` (repeatable; `--thought` is the same flag), checked by the registry."""
    return click.option("--thoughts", "--thought", "thoughts", multiple=True, required=default is None,
                        default=default, show_default=bool(default),
                        callback=lambda ctx, param, values: tuple(parse_thoughts(values)),
                        help=help or "Thoughts, comma-separated or repeated (cot, pot, eot, or a registered one).")


def decontaminate_option(f: Any) -> Any:
    """`--decontaminate gsm8k:test,svamp` (or `none`) as a tuple of data set specs."""
    return click.option("--decontaminate", default=",".join(DEFAULT_EVAL_SETS), show_default=True,
                        callback=lambda ctx, param, value: tuple(d.strip() for d in value.split(",") if d.strip()),
                        help="Evaluation sets to decontaminate against (data set specs), or `none`.")(f)


def teacher_backend_options(f: Any) -> Any:
    """The teacher-backend flags of generate and synth (a backend refuses those it does not take)."""
    for decorator in reversed([
        click.option("--base-url", help="openai: endpoint (default: $OPENAI_BASE_URL, else OpenAI); several servers as "
                                        "URL1,URL2,... or @FILE (one URL a line): each gets its share of "
                                        "--concurrency, a dead one's requests go to the others."),
        click.option("--api-key", help="openai: default $OPENAI_API_KEY."),
        click.option("--request-timeout", "--timeout", "timeout", type=float, help="openai: seconds per request attempt [120]."),
        click.option("--max-retries", type=int, help="openai: retries on 429/5xx/timeouts/resets [6]."),
        click.option("--rpm", type=float, help="openai: requests per minute at most."),
        click.option("--tpm", type=float, help="openai: tokens per minute at most (prompt + max tokens x n)."),
        click.option("--n-mode", type=click.Choice(["auto", "native", "split"]),
                     help="openai: send n in one call (native), one call per sample (split), or detect (auto) [auto]."),
        click.option("--device", help="hf: cuda, mps or cpu [the best available]."),
        click.option("--dtype", help="hf: torch dtype [auto]."),
        click.option("--batch-size", type=int, help="hf/vllm: requests per generate batch [8 / 256]."),
        click.option("--gpus", type=int, help="hf: one replica per GPU, requests shared out (with --device cpu: N on the CPU)."),
        click.option("--continue-final-message", is_flag=True, default=None,
                     help="openai: the server (vLLM, SGLang) continues the assistant's answer so far (tir rounds) "
                          "rather than answering after it."),
    ]):
        f = decorator(f)
    return f
