"""A study's report: interquartile means over seeds with 95% stratified-bootstrap
intervals (rliable), as a Markdown table and a figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pc_lightning.study.config import Study


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of runs (n,): the mean of the middle 50% (rliable's definition)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(scores, dtype=np.float64)[:, None]))


def aggregate(results: list[dict], key: str, reps: int = 2000, seed: int = 0) -> dict[str, dict[Any, dict]]:
    """Per variant and x: IQM over seeds and its 95% stratified-bootstrap interval (rliable)."""
    from rliable import library as rly
    from rliable import metrics

    out: dict[str, dict[Any, dict]] = {}
    for variant in dict.fromkeys(r["variant"] for r in results):
        xs = list(dict.fromkeys(r["x"] for r in results if r["variant"] == variant))
        out[variant] = {}
        for x in xs:
            runs = np.array([r[key] for r in results if r["variant"] == variant and r["x"] == x and key in r],
                            dtype=np.float64)
            if not len(runs):
                continue
            np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
            point, interval = rly.get_interval_estimates(
                {variant: runs[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps)
            out[variant][x] = {"iqm": float(point[variant][0]), "low": float(interval[variant][0, 0]),
                               "high": float(interval[variant][1, 0]), "n": len(runs)}
    return out


def write_table(study: Study, results: list[dict], path: Path, command: str) -> None:
    keys = ["heldout", *study.extra_tests]
    counts = sorted({sum(1 for r in results if (r["variant"], r["x"]) == key)
                     for key in {(r["variant"], r["x"]) for r in results}})
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (those finished per cell)"
    lines = [f"# Study: {study.title or study.name}", "",
             f"`{command}`", "",
             f"`{study.metric}` (per test: heldout, and each extra test"
             + "".join(f"; {k}: `{m}`" for k, m in study.extra_metric.items())
             + f") of the `best.ckpt` each run chose on "
             f"`{study.select.split('/')[0]}`: interquartile mean over "
             f"{seeds} seeds, [95% stratified-bootstrap interval] (rliable). x: {study.x_label}.", ""]
    for key in keys:
        agg = aggregate(results, key)
        lines += [f"## {key}", "", "| variant | " + " | ".join(f"x = {x}" for x in study.x_values) + " |",
                  "|---" * (len(study.x_values) + 1) + "|"]
        for variant, row in agg.items():
            if not row:
                continue
            cells = [f"{row[x]['iqm']:.2f} [{row[x]['low']:.2f}, {row[x]['high']:.2f}]" if x in row else "-"
                     for x in study.x_values]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    if study.time_to:
        lines += time_to_lines(study, results)
    wall = sum(r.get("wall_s", 0.0) for r in results)
    total = len(study.cells())
    done = f"{len(results)} cells" if len(results) == total else f"{len(results)} of the {total} cells (a partial report)"
    lines.append(f"{done}, {wall / 60:.1f} cell-minutes in all.")
    path.write_text("\n".join(lines) + "\n")


def first_reaching(curve: list[list[float]], threshold: float) -> tuple[int, float] | None:
    """(step, training seconds) of the first evaluation whose score is >= ``threshold``, or None."""
    return next(((int(step), secs) for step, secs, value in curve if value >= threshold), None)


def time_to_lines(study: Study, results: list[dict]) -> list[str]:
    """The report's section on how fast one variant at one x first reaches a validation score."""
    variant, x, threshold = study.time_to["variant"], study.time_to["x"], float(study.time_to["threshold"])
    rows = sorted((r for r in results if r["variant"] == variant and r["x"] == x and "curve" in r),
                  key=lambda r: r["seed"])
    lines = [f"## Training time to {study.select} >= {threshold} ({variant}, x = {x})", "",
             "Training seconds (validations excluded, `time/train_s`) of the first evaluation at or above the "
             "threshold, one cell process on one thread; held-out: the cell's selected checkpoint.", "",
             "| seed | step | training s | held-out |", "|---|---|---|---|"]
    reached = []
    for r in rows:
        hit = first_reaching(r["curve"], threshold)
        if hit is not None:
            reached.append(hit[1])
        cells = ["not reached", "-"] if hit is None else [str(hit[0]), f"{hit[1]:.0f}"]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {r['heldout']:.2f} |")
    if reached:
        lines += ["", f"Reached by {len(reached)} of {len(rows)} seeds; median {np.median(reached):.0f} s "
                      f"(range {min(reached):.0f}-{max(reached):.0f} s)."]
    return lines + [""]


def plot(study: Study, results: list[dict], path: Path, key: str = "heldout") -> None:
    """The :func:`figure`, written to ``path`` as .png and .svg."""
    import matplotlib.pyplot as plt

    fig = figure(study, results, key)
    for suffix in (".png", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=150)
    plt.close(fig)


def figure(study: Study, results: list[dict], key: str = "heldout"):
    """Held-out IQM against x, one line per variant with its interval band; the expert dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(results, key)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for variant, row in agg.items():
        xs = [x for x in study.x_values if x in row]
        mid = [row[x]["iqm"] for x in xs]
        ax.plot(xs, mid, marker="o", label=variant)
        ax.fill_between(xs, [row[x]["low"] for x in xs], [row[x]["high"] for x in xs], alpha=0.2)
    if study.expert is not None:
        ax.axhline(study.expert, ls="--", c="k", lw=1, label="expert")
    numeric = all(isinstance(x, (int, float)) for x in study.x_values)
    if numeric and min(study.x_values) > 0 and max(study.x_values) / min(study.x_values) >= 10:
        ax.set_xscale("log")
    if numeric:  # ticks at the grid's own values only (no 1.5 training mazes)
        ax.set_xticks(study.x_values)
        ax.set_xticklabels([str(x) for x in study.x_values])
        ax.minorticks_off()
    ax.set_xlabel(study.x_label)
    ax.set_ylabel(f"{key} {study.metric.split('/')[-1]} (IQM, 95% CI)")
    ax.set_ylim(-0.02, 1.05 if study.metric.endswith(("success_rate", "fraction_in_bowls")) else None)
    ax.set_title(study.title or study.name, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
