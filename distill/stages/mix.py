"""The mix stage: build a Mix-Thoughts (MTD) training set from `distill generate` outputs."""
from __future__ import annotations

from dataclasses import dataclass, fields

from rich.table import Table

from distill.mix import MixOptions, MixResult, mix
from distill.progress import console
from distill.stages import Stage, register_stage
from distill.stages.synth import names
from distill.thoughts import thought_names


@dataclass(frozen=True)
class MixStageOptions(MixOptions):
    inputs: tuple[str, ...] = ()
    output: str = ""
    overwrite: bool = False
    push_to_hub: str | None = None


def run(opts: MixStageOptions) -> MixResult:
    from distill.records import InputError

    if not opts.output:
        raise InputError("missing required option '--output'")
    content = {f.name: getattr(opts, f.name) for f in fields(MixOptions)}
    content["decontaminate"] = names(opts.decontaminate)
    return mix(opts.inputs, opts.output, overwrite=opts.overwrite, push_to_hub=opts.push_to_hub, **content)


def summary_table(result: MixResult) -> Table:
    counts = result.counts
    thoughts = [t for t in thought_names() if t in counts["in"]]
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


def show(result: MixResult) -> None:
    console.print(summary_table(result))
    if result.flagged:
        console.print(f"decontamination dropped {len(result.flagged)} questions "
                      f"({sum(f['rationales'] for f in result.flagged)} rationales); see mix.json:")
        for f in result.flagged[:5]:
            console.print(f"  {f['question_id']} ~ {f['eval_id']} (overlap {f['score']:.2f})")
        if len(result.flagged) > 5:
            console.print(f"  ... and {len(result.flagged) - 5} more")
    console.print(f"wrote {result.output} (load with datasets.load_from_disk)")


register_stage(Stage("mix", MixStageOptions, run, show,
                     inputs="inputs", aliases={"thought": "thoughts", "o": "output"}))
