"""Reports of an evaluation: report.json, report.md (tables), chart.png and a rich table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.evaluation.scoring import OVERALL
from distill.markdown import md_table

Report = dict[str, Any]  # {"config": ..., "methods": [...], "datasets": {name: summary}}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table: one row per data set, one column per method."""
    methods = report["methods"]
    rows = [[name, str(s["scored"]), *(_pct(s["accuracy"][m]) for m in methods)] for name, s in report["datasets"].items()]
    return ["data set", "questions", *methods], rows


def to_markdown(report: Report) -> str:
    cfg = report["config"]
    parts = [f"# Evaluation of `{cfg.get('model')}`", "",
             f"Thoughts {', '.join(report['thoughts'])}; fallback order {' → '.join(report['fallback'])}; "
             f"{cfg.get('samples', 1)} sample(s) per question and thought. Accuracy in %.", "",
             md_table(*_rows(report))]
    for name, s in report["datasets"].items():
        if "pass@k" in s:
            ks = list(next(iter(s["pass@k"].values())))
            header = ["method", *(f"pass@{k}" for k in ks), f"PassRatio@{s['samples']}", *(f"maj@{k}" for k in ks)]
            rows = [[m, *(_pct(s["pass@k"][m][k]) for k in ks), _pct(s["pass_ratio@n"][m]),
                     *(_pct(s["maj@k"][m][k]) if m in s["maj@k"] else "–" for k in ks)] for m in s["pass@k"]]
            parts += ["", f"## {name}: sampling metrics", "", md_table(header, rows)]
    for name, s in report["datasets"].items():
        if name == OVERALL and len(report["datasets"]) == 2:
            continue  # the one data set's tables already say it
        for key, groups in s.get("by", {}).items():
            rows = [[value, str(g["scored"]), *(_pct(g["accuracy"][m]) for m in report["methods"])]
                    for value, g in groups.items()]
            parts += ["", f"## {name}: accuracy by {key}", "", md_table([key, "questions", *report["methods"]], rows)]
    overall = report["datasets"][OVERALL]["failures"]
    classes = sorted({c for f in overall.values() for c in f})
    parts += ["", "## Outcome classes per thought (all data sets)", "",
              md_table(["thought", *classes], [[t, *(str(f.get(c, 0)) for c in classes)] for t, f in overall.items()])]
    return "\n".join(parts) + "\n"


def chart_groups(report: Report) -> list[str]:
    """The data sets the chart shows; with one data set its "overall" bars would repeat it."""
    names = list(report["datasets"])
    return [n for n in names if n != OVERALL] if len(names) == 2 and OVERALL in names else names


def write_chart(report: Report, path: Path) -> None:
    """Grouped bars: accuracy of each method (thoughts, fallback, vote, oracle) per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, methods = chart_groups(report), report["methods"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) * len(methods) / 3), 4))
    for j, m in enumerate(methods):
        values = [100 * (report["datasets"][n]["accuracy"][m] or 0) for n in names]
        bars = ax.bar([i + j * width for i in range(len(names))], values, width, label=m)
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['config'].get('model')}: accuracy by thought")
    ax.legend(ncols=min(len(methods), 6), fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(report: Report, out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(to_markdown(report))
    write_chart(report, out_dir / "chart.png")


def rich_table(report: Report) -> Any:
    from rich.table import Table

    header, rows = _rows(report)
    table = Table(title=f"distill eval: accuracy (%) of {report['config'].get('model')}")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == OVERALL else None)
    return table
