"""``pc-lightning summary``: the numbers of the checkpoints that runs chose, over seeds.

    pc-lightning summary runs/sweep_pc/version_* runs/sweep_bc/version_* \\
        --metrics val_envs/fraction_in_bowls heldout/fraction_in_bowls heldout_shift/fraction_in_bowls

Each run folder (a TensorBoard version folder of a fit) has ``checkpoints/best.ckpt``, the
checkpoint chosen on validation; its step is read from the file, and each metric is the
value logged at that step by an evaluation during fit, or, with ``HeldOutEvaluation``'s
``fit_suites``, the chosen checkpoint's evaluation at the end (``<run>/selected.json``). Runs
are grouped by their parent folder (``sweep_pc``, one per variant); a group's cell is the
mean with a 95% t-interval over its runs (mean +- t(0.975, n-1) s / sqrt n), then the
runs' values in order, and the row says at which steps the checkpoints were chosen.
Nothing is selected here: the checkpoints were chosen by the fits, on validation.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

#: t(0.975, n - 1) for n = 2..10 runs: the two-sided 95% interval's factor, where scipy is absent
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def t_975(n: int) -> float:
    """t(0.975, n - 1), the 95% t-interval's factor for n runs: scipy's quantile where scipy
    is installed (it comes with the ``study`` extra), else the table for 2-10 runs; above 10
    runs without scipy a ValueError, rather than a normal quantile's narrower interval."""
    try:
        from scipy.stats import t
    except ImportError:
        if n not in T_975:
            raise ValueError(f"a t-interval over {n} runs needs scipy (pip install -e '.[study]')") from None
        return T_975[n]
    return float(t.ppf(0.975, n - 1))


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (NaN with one value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(t_975(len(v)) * v.std(ddof=1) / math.sqrt(len(v)))


def chosen(run: Path, metrics: list[str]) -> tuple[int, dict[str, float]]:
    """The step of ``run``'s best.ckpt and each metric's value logged at that step."""
    from pc_lightning.logs import scalars

    ckpt = run / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"{run}: no checkpoints/best.ckpt (is it a fit's version folder?)")
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    record = run / "selected.json"  # HeldOutEvaluation's record of the chosen checkpoint's test suites
    values = json.loads(record.read_text())["results"] if record.is_file() else {}
    values = {m: float(values[m]) for m in metrics if m in values}
    missing = [m for m in metrics if m not in values]
    try:
        logged = scalars(run, missing) if missing else {}  # one read of the folder for them all
    except RuntimeError as e:
        raise SystemExit(str(e))
    for m in missing:
        # Lightning logs a validation at the batches that had stepped, one less than the
        # global step of the checkpoint it chose
        at = [value for s, value in logged[m] if s == step - 1]
        if not at:
            raise SystemExit(f"{run}: {m!r} was not logged at the chosen step {step}")
        values[m] = at[-1]
    return step, values


def table(runs: list[Path], metrics: list[str], digits: int = 3) -> str:
    """A Markdown table: one row per group of runs, one column per metric."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        groups.setdefault(run.parent.name, []).append(run)
    lines = ["| runs | n | chosen at | " + " | ".join(f"`{m}`" for m in metrics) + " |",
             "|---" * (len(metrics) + 3) + "|"]
    for name, members in groups.items():
        found = [chosen(r, metrics) for r in sorted(members)]
        cells = []
        for m in metrics:
            vals = [v[m] for _, v in found]
            mean, half = interval(vals)
            each = ", ".join(f"{x:.{digits}f}" for x in vals)
            cells.append(f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}") + f" ({each})")
        steps = ", ".join(str(s) for s, _ in found)
        lines.append(f"| {name} | {len(found)} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pc-lightning summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="fit version folders (each with checkpoints/best.ckpt)")
    p.add_argument("--metrics", nargs="+", required=True, help="logged scalars, e.g. heldout/success_rate")
    p.add_argument("--digits", type=int, default=3)
    a = p.parse_args(argv)
    print(table(a.runs, a.metrics, a.digits))


if __name__ == "__main__":
    main()
