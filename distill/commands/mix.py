from __future__ import annotations

import click
from rich.table import Table

from distill.decontam import DEFAULT_EVAL_SETS, NGRAM, THRESHOLD
from distill.mix import MixResult, mix
from distill.progress import console
from distill.records import THOUGHTS


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list; `none` is the empty list."""
    return () if value.strip().lower() == "none" else tuple(v.strip() for v in value.split(",") if v.strip())


def summary_table(result: MixResult) -> Table:
    counts = result.counts
    thoughts = [t for t in THOUGHTS if t in counts["in"]]
    table = Table(title=f"distill mix -> {result.output}")
    table.add_column("rationales")
    for t in [*thoughts, "total"]:
        table.add_column(t, justify="right")

    def add(label: str, per: dict[str, int], **style: str) -> None:
        table.add_row(label, *(str(per.get(t, 0)) for t in thoughts), str(sum(per.values())), **style)

    add("in", counts["in"], style="bold")
    for reason, per in counts["dropped"].items():
        add(f"dropped: {reason}", per)
    add("kept", counts["kept"], style="bold")
    for split, per in counts["splits"].items():
        add(f"  {split} ({counts['questions'][split]} questions)", per)
    return table


@click.command(help="Build a Mix-Thoughts (MTD) training set from `distill generate` outputs IN.jsonl... "
                    "into the directory OUT (a `datasets` DatasetDict, JSONL, README.md and mix.json).")
@click.argument("inputs", metavar="IN.jsonl...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is an earlier `distill mix` output.")
@click.option("--thoughts", default=",".join(THOUGHTS), show_default=True, help="Thoughts to keep, comma-separated.")
@click.option("--student-cues", default="etd", show_default=True, help="Cue set (name in the cues file).")
@click.option("--cues-file", type=click.Path(exists=True, dir_okay=False), help="Your own cues YAML (default: prompts/cues.yaml).")
@click.option("--keep-incorrect", is_flag=True, help="Keep rationales with a wrong or unchecked answer too.")
@click.option("--per-question", type=int, help="At most K rationales per question and thought (lowest sample first).")
@click.option("--balance", is_flag=True, help="Downsample every thought to the count of the rarest one.")
@click.option("--val-fraction", default=0.05, show_default=True, help="Share of questions in validation (0: none).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and of --balance.")
@click.option("--decontaminate", default=",".join(DEFAULT_EVAL_SETS), show_default=True,
              help="Evaluation sets to decontaminate against (data set specs), or `none`.")
@click.option("--decontam-ngram", default=NGRAM, show_default=True, help="Word n-gram size of the overlap test.")
@click.option("--decontam-threshold", default=THRESHOLD, show_default=True,
              help="Drop a question when this share of the shorter question's n-grams is shared.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the evaluation sets live (see `distill.data`).")
@click.option("--tokenizer", help="Student tokenizer (hub name or local dir): turns the length filter on.")
@click.option("--max-source-tokens", default=256, show_default=True)
@click.option("--max-target-tokens", default=256, show_default=True)
@click.option("--push-to-hub", metavar="REPO_ID", help="Also upload the data set and its card to the hub.")
def command(inputs: tuple[str, ...], output: str, overwrite: bool, thoughts: str, decontaminate: str,
            push_to_hub: str | None, **options: object) -> None:
    result = mix(
        inputs, output, overwrite=overwrite, push_to_hub=push_to_hub,
        thoughts=_names(thoughts), decontaminate=_names(decontaminate), **options,
    )
    console.print(summary_table(result))
    if result.flagged:
        console.print(f"decontamination dropped {len(result.flagged)} questions "
                      f"({sum(f['rationales'] for f in result.flagged)} rationales); see mix.json:")
        for f in result.flagged[:5]:
            console.print(f"  {f['question_id']} ~ {f['eval_id']} (overlap {f['score']:.2f})")
        if len(result.flagged) > 5:
            console.print(f"  ... and {len(result.flagged) - 5} more")
    console.print(f"wrote {result.output} (load with datasets.load_from_disk)")
