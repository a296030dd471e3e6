"""Students: load a seq2seq or causal model with its tokenizer and the settings it was trained with.

A trained student directory holds the model (`save_pretrained`), its tokenizer and
`distill_student.json` (`StudentSettings`): the cues and lengths used in training, so that
`distill eval` prompts the student exactly as it was taught.
"""
from __future__ import annotations

import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from distill.cues import load_cues
from distill.records import InputError

SETTINGS_FILE = "distill_student.json"
Kind = Literal["seq2seq", "causal"]


@dataclass
class StudentSettings:
    kind: Kind
    cues: dict[str, str] = field(default_factory=lambda: dict(load_cues()))
    max_source_len: int = 256
    max_target_len: int = 256
    prompt_format: Literal["plain", "chat"] = "plain"  # causal students: the cue text, or the chat template

    def save(self, directory: str | os.PathLike) -> None:
        Path(directory, SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "StudentSettings | None":
        path = Path(directory, SETTINGS_FILE)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown field {sorted(unknown)[0]!r}", path)
        return cls(**data)


def model_kind(config: Any) -> Kind:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def format_prompt(tokenizer: Any, source: str, settings: StudentSettings) -> str:
    """The text a causal student continues (seq2seq students read `source` as it is)."""
    if settings.kind == "causal" and settings.prompt_format == "chat":
        messages = [{"role": "user", "content": source}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return source


def _hub_host_resolves(timeout: float = 1.0) -> bool:
    """Whether the hub's host name resolves (a DNS look-up in a thread, at most `timeout` seconds)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(socket.getaddrinfo, host, 443)
        try:
            future.result(timeout=timeout)
            return True
        except (OSError, FutureTimeout):
            return False


def check_loadable(name_or_path: str, what: str) -> None:
    """Fail at once, in one line, where `name_or_path` can be neither a local model nor a hub model
    (transformers would spend tens of seconds in retries first)."""
    if Path(name_or_path).exists():
        return
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or name_or_path.endswith("/")
    from distill.train.config import preset_names

    presets = ", ".join(preset_names())
    if looks_like_path:
        raise InputError(f"cannot load a {what} from {name_or_path!r}: no such directory (presets: {presets})")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        why = "not a local directory and not in the hub cache (HF_HUB_OFFLINE is set)"
    elif not _hub_host_resolves():
        why = "not a local directory, not in the hub cache, and the hub cannot be reached"
    else:
        return
    raise InputError(f"cannot load a {what} from {name_or_path!r}: {why} (presets: {presets})")


def pretrained(auto: Any, name_or_path: str, what: str) -> Any:
    """`auto.from_pretrained(name_or_path)` (`auto`: AutoConfig, AutoTokenizer, ...); a one-line
    InputError naming `what` where there is none to load."""
    check_loadable(name_or_path, what)
    try:
        return auto.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a {what} from {name_or_path!r}: {str(exc).splitlines()[0]}") from None


def pretrained_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a local model or hub id; padding with EOS where it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = pretrained(AutoTokenizer, name_or_path, "tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_student(name_or_path: str, *, dtype: Any = None, device: Any = None) -> tuple[Any, Any, StudentSettings]:
    """(model, tokenizer, settings) for a trained student dir, a local model dir or a hub id."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    kind = model_kind(pretrained(AutoConfig, name_or_path, "model"))
    settings = StudentSettings.load(name_or_path) if Path(name_or_path).is_dir() else None
    settings = settings or StudentSettings(kind=kind)
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(name_or_path, dtype=dtype or "auto")
    tokenizer = pretrained_tokenizer(name_or_path)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer, settings
