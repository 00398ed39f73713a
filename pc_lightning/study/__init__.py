"""``pc-lightning study``: held-out success against the amount of training data, PC vs the
BC variants, with intervals: the grid of ordinary fits behind the paper's central figure.

    pc-lightning study --config conf/study/maze.yaml [--quick] [--workers N] [--out DIR]
    pc-lightning study --config conf/study/maze.yaml --engine ray --ray-address auto  # a Ray cluster
    pc-lightning study --config conf/study/maze.yaml --report-only  # the table so far
    pc-lightning study --config conf/study/maze_headline.yaml --variants pc  # some variants' cells

A study config names a domain's config per variant, the x axis (a config key and its
values, e.g. ``data.init_args.n_train``), the seeds, and overrides shared by every
cell. Each cell (variant, x, seed) is a normal run, ``pc-lightning fit`` in a subprocess,
with its own TensorBoard folder and checkpoints under ``<out>/cells/<cell>``; its
held-out number is then measured by ``pc-lightning test`` on the ``best.ckpt`` that the
fit chose on ``val_envs`` (never on held-out), plus one test per extra evaluation (e.g.
31x31 mazes zero-shot).

A finished cell is recorded in ``<cell>/result.json`` with a hash of everything that
defines it (its arguments and the bytes of the configs they read), and is never
recomputed: an interrupted study, rerun with the same command, continues where it
stopped (a cell that was cut off starts again). Cells run in a local pool of ``workers``
processes, each limited to ``threads`` CPU threads (and the pool to the memory at
``memory_gb`` per cell), so the pool does not oversubscribe the machine; on a cluster,
``--engine ray`` makes each cell a Ray task reserving the same, and Ray places them. Aggregation (rliable): per variant and x, the interquartile mean over seeds
and its 95% stratified-bootstrap interval, written as a Markdown table and a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pc_lightning.study.config import Cell, Study, config_chain
from pc_lightning.study.report import aggregate, iqm, plot, write_table
from pc_lightning.study.runner import finished, pool_size, run_cell, run_study

__all__ = ["Cell", "Study", "aggregate", "config_chain", "iqm", "main", "plot", "pool_size", "run_cell", "run_study",
           "write_table"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="pc-lightning study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a study config, e.g. conf/study/maze.yaml")
    p.add_argument("--quick", action="store_true", help="the config's small grid: the whole pipeline in minutes")
    p.add_argument("--workers", type=int, default=None,
                   help="cells at a time on this machine (default: cores / threads, within memory / memory_gb)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: a process pool here; ray: one Ray task per cell, on a cluster or a local instance")
    p.add_argument("--ray-address", default=None,
                   help="with --engine ray: a running cluster ('auto', 'ray://host:10001'); default: start a local one")
    p.add_argument("--variants", nargs="+", default=None,
                   help="run (or report) only these variants' cells, e.g. --variants pc; the others' finished cells are kept")
    p.add_argument("--out", default=None, help="results folder (default: the config's out, runs/study/<name>)")
    p.add_argument("--report", default=None, help="where the table and figure go (default: <out>/study_<name>.md/.png)")
    p.add_argument("--report-only", action="store_true",
                   help="run no cell: the table and figure of the cells finished so far (e.g. while a study runs)")
    a = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
        import rliable  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"pc-lightning study needs {e.name}: pip install -e '.[study]'")
    study = Study.load(a.config, quick=a.quick)
    if a.variants:
        study.only_variants(a.variants)
    if a.out:
        study.out = Path(a.out)
    if a.report_only:
        results = [json.loads((study.out / "cells" / c.name / "result.json").read_text())
                   for c in study.cells() if finished(study, c)]
        if not results:
            raise SystemExit(f"no finished cell under {study.out / 'cells'} yet")
    else:
        results = run_study(study, a.workers, a.engine, a.ray_address)
    report = Path(a.report) if a.report else study.out / f"study_{study.name}.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    command = "pc-lightning study --config " + a.config + (" --quick" if a.quick else "")
    write_table(study, results, report, command)
    plot(study, results, report.with_suffix(".png"))
    print(f"table: {report}\nfigure: {report.with_suffix('.png')} (and .svg)")


if __name__ == "__main__":
    main()
