"""The `distill` command line: thin Click shells over the library functions.

Subcommands are imported lazily so that `distill validate` does not pay for importing torch.
Each lives in `distill/commands/<name>.py` as a Click command called `command`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings

import click

from distill import __version__
from distill.records import InputError, RunFailed

COMMANDS = {
    "validate": "Check rationales: the answer each computes and whether it matches the gold.",
    "generate": "Prompt a teacher for rationales and keep the ones that check out.",
    "mix": "Build a Mix-Thoughts (MTD) training set from validated rationales.",
    "train": "Fine-tune a student on an MTD data set.",
    "eval": "Decode with each thought, answer with fallback/vote, report accuracy.",
    "run": "Run a recipe (generate -> mix -> train -> eval) end to end.",
    "synth": "Write new questions Xwin-Math style and label them by agreement.",
}


def _available() -> list[str]:
    return [n for n in COMMANDS if importlib.util.find_spec(f"distill.commands.{n}") is not None]


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return _available()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The COMMANDS help strings, without importing every command (and torch) for `--help`."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _available():
            return None
        return importlib.import_module(f"distill.commands.{name}").command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except RunFailed as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distill")
def main() -> None:
    """Distil math reasoning (chain-, program- and equation-of-thought) into small students."""
    quiet_libraries()


# The libraries' own progress bars and advice would interleave with ours; a user's settings win.
QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
         "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false"}


def quiet_libraries() -> None:
    """Silence what is not ours (set before transformers, datasets or the hub are imported)."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)


if __name__ == "__main__":
    main()
