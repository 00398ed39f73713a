"""``pc-lightning study``: held-out success against the amount of training data, PC vs the
BC variants, with intervals: the grid of ordinary fits behind the paper's central figure.

    pc-lightning study --config conf/study/maze.yaml [--quick] [--workers N] [--out DIR]
    pc-lightning study --config conf/study/maze.yaml --engine ray --ray-address auto  # a Ray cluster
    pc-lightning study --config conf/study/maze.yaml --report-only  # the table so far

A study config names a domain's config per variant, the x axis (a config key and its
values, e.g. ``data.init_args.n_train_mazes``), the seeds, and overrides shared by every
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
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT_KEYS = {"name", "variants", "x", "seeds", "metric", "select", "overrides", "fit", "test", "extra_tests", "expert",
             "workers", "threads", "memory_gb", "out", "quick", "title", "time_to"}


@dataclass
class Cell:
    """One run of the grid."""

    variant: str
    x: Any
    seed: int
    args: list[str]  # the arguments of both fit and test (config, overrides, x, seed)
    config_files: list[Path]
    fit_args: list[str] = field(default_factory=list)  # the fit's own, after args
    test_args: list[str] = field(default_factory=list)  # every test's own, after args
    extras: dict[str, list[str]] = field(default_factory=dict)  # the extra tests it runs, by name: their args

    @property
    def name(self) -> str:
        return f"{self.variant}-x{self.x}-s{self.seed}"

    @property
    def digest(self) -> str:
        """Hash of everything that defines the cell: its arguments and its configs' bytes."""
        h = hashlib.sha256(json.dumps([self.args, self.fit_args, self.test_args, self.extras]).encode())
        for f in self.config_files:
            h.update(f.read_bytes())
        return h.hexdigest()[:12]


@dataclass
class Study:
    """A parsed study config (see the module docstring and ``conf/study/maze.yaml``)."""

    name: str
    variants: dict[str, str]
    x_key: str
    x_label: str
    x_values: list[Any]
    seeds: list[int]
    metric: str
    overrides: list[str]
    fit: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    select: str = ""
    time_to: dict[str, Any] = field(default_factory=dict)
    extra_tests: dict[str, list[str]] = field(default_factory=dict)
    extra_only: dict[str, dict[str, list]] = field(default_factory=dict)  # per extra test: {"variants", "x"} it runs on
    extra_metric: dict[str, str] = field(default_factory=dict)  # per extra test: the metric it reads, if not ``metric``
    expert: float | None = None
    workers: int | None = None
    threads: int = 1
    memory_gb: float | None = None  # per cell: bounds the local pool, and a Ray task's reservation
    out: Path = Path("runs/study")
    title: str = ""

    @classmethod
    def load(cls, path: str | Path, quick: bool = False) -> "Study":
        path = Path(path)
        if not path.is_file():
            raise SystemExit(f"--config {path}: no such file")
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - ROOT_KEYS
        if unknown:
            raise SystemExit(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(ROOT_KEYS)})")
        for key in ("name", "variants", "x", "seeds", "metric"):
            if key not in raw:
                raise SystemExit(f"{path}: missing key {key!r}")
        if quick:
            q = raw.get("quick")
            if not q:
                raise SystemExit(f"{path}: --quick needs a 'quick' section")
            for key, value in q.items():
                if key == "x_values":
                    raw["x"]["values"] = value
                elif key == "variants":
                    raw["variants"] = {v: raw["variants"][v] for v in value}
                elif key == "overrides":
                    raw["overrides"] = list(raw.get("overrides", [])) + list(value)
                elif key in ("fit", "test"):
                    raw[key] = list(raw.get(key, [])) + list(value)
                elif key in ("seeds", "extra_tests", "name", "time_to"):
                    raw[key] = value
                else:
                    raise SystemExit(f"{path}: quick.{key} is not a key --quick can set")
        x = raw["x"]
        out = Path(raw.get("out", f"runs/study/{raw['name']}"))
        if quick:  # its cells share names with the full grid's: its own folder, so neither replaces the other
            out = out.with_name(out.name + "-quick")
        return cls(name=raw["name"], variants=dict(raw["variants"]), x_key=x["key"], x_label=x.get("label", x["key"]),
                   x_values=list(x["values"]), seeds=[int(s) for s in raw["seeds"]], metric=raw["metric"],
                   overrides=[str(a) for a in raw.get("overrides", [])], fit=[str(a) for a in raw.get("fit", [])],
                   test=[str(a) for a in raw.get("test", [])],
                   select=raw.get("select", raw["metric"].replace("heldout/", "val_envs/", 1)),
                   time_to=dict(raw.get("time_to") or {}),
                   extra_tests={k: [str(a) for a in (v["args"] if isinstance(v, dict) else v)]
                                for k, v in (raw.get("extra_tests") or {}).items()},
                   extra_only={k: {f: list(v[f]) for f in ("variants", "x") if f in v}
                               for k, v in (raw.get("extra_tests") or {}).items() if isinstance(v, dict)},
                   extra_metric={k: str(v["metric"]) for k, v in (raw.get("extra_tests") or {}).items()
                                 if isinstance(v, dict) and "metric" in v},
                   expert=raw.get("expert"), workers=raw.get("workers"), threads=int(raw.get("threads", 1)),
                   memory_gb=raw.get("memory_gb"),
                   out=out, title=raw.get("title", ""))

    def extra_applies(self, name: str, cell: Cell) -> bool:
        """Whether extra test ``name`` runs on ``cell`` (an extra test may name its variants and x values)."""
        only = self.extra_only.get(name, {})
        return cell.variant in only.get("variants", [cell.variant]) and cell.x in only.get("x", [cell.x])

    def cells(self) -> list[Cell]:
        """Every cell, seed by seed: an interrupted study has whole grids of its first seeds."""
        # a config stacked by the overrides (``--config overlay.yaml``) defines every cell too
        stacked = [f for i, a in enumerate(self.overrides[:-1]) if a == "--config"
                   for f in config_chain(Path(self.overrides[i + 1]))]
        files = {variant: config_chain(Path(config)) + stacked for variant, config in self.variants.items()}
        out = []
        for seed in self.seeds:
            for variant, config in self.variants.items():
                for x in self.x_values:
                    args = ["--config", config, *self.overrides, f"--{self.x_key}", str(x),
                            "--seed_everything", str(seed)]
                    cell = Cell(variant, x, seed, args, files[variant], self.fit, self.test)
                    cell.extras = {n: a for n, a in self.extra_tests.items() if self.extra_applies(n, cell)}
                    out.append(cell)
        return out


def config_chain(path: Path) -> list[Path]:
    """A config and the configs it includes (``config: other.yaml``), whose bytes define a cell."""
    if not path.is_file():
        raise SystemExit(f"study variant config {path}: no such file")
    files = [path]
    raw = yaml.safe_load(path.read_text()) or {}
    if isinstance(raw, dict) and isinstance(raw.get("config"), str):
        files += config_chain(path.parent / raw["config"])
    return files


# ---------------------------------------------------------------------------- running
def _cli() -> list[str]:
    script = Path(sys.executable).parent / "pc-lightning"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pc_lightning.cli"]


def scalars(run_dir: Path, tag: str | list[str]) -> list[tuple[int, float]] | dict[str, list[tuple[int, float]]]:
    """Every (step, value) of ``tag`` in a TensorBoard folder; for a list of tags, a dict of
    them from one read of the folder. RuntimeError naming a tag that was not logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    logged = set(acc.Tags()["scalars"])
    out = {}
    for t in [tag] if isinstance(tag, str) else tag:
        if t not in logged:
            raise RuntimeError(f"{run_dir}: no {t!r} logged")
        out[t] = [(int(e.step), float(e.value)) for e in acc.Scalars(t)]
    return out[tag] if isinstance(tag, str) else out


def _scalar(run_dir: Path, tag: str) -> float:
    """The last value of ``tag`` in a TensorBoard folder."""
    return scalars(run_dir, tag)[-1][1]


def _curve(run_dir: Path, select: str) -> list[list[float]]:
    """The fit's validation curve, [step, training seconds, ``select``] per evaluation."""
    logged = scalars(run_dir, ["time/train_s", select])
    seconds = dict(logged["time/train_s"])
    return [[step, round(seconds.get(step, float("nan")), 3), value] for step, value in logged[select]]


def run_cell(study: Study, cell: Cell, log) -> dict:
    """Fit the cell, test its ``best.ckpt`` (and each extra test), record ``result.json``."""
    cell_dir = study.out / "cells" / cell.name
    result_file = cell_dir / "result.json"
    digest = cell.digest
    if _finished(study, cell):
        return json.loads(result_file.read_text())
    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # cut off, or made by another definition: start it again
    cell_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(study.threads), "MKL_NUM_THREADS": str(study.threads)}
    where = ["--trainer.logger.init_args.save_dir", str(cell_dir), "--trainer.logger.init_args.name", "run",
             "--trainer.enable_progress_bar", "false"]
    start = time.perf_counter()
    with open(cell_dir / "fit.log", "w") as out:
        proc = subprocess.run([*_cli(), "fit", *cell.args, *cell.fit_args, *where], stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"cell {cell.name}: fit failed (exit {proc.returncode}); see {cell_dir / 'fit.log'}")
    fit_s = time.perf_counter() - start
    ckpt = next((cell_dir / "run").glob("version_*/checkpoints/best.ckpt"), None)
    if ckpt is None:
        raise RuntimeError(f"cell {cell.name}: no best.ckpt under {cell_dir / 'run'}")
    result = {"variant": cell.variant, "x": cell.x, "seed": cell.seed, "digest": digest, "fit_s": round(fit_s, 1),
              "curve": _curve(ckpt.parent.parent, study.select)}
    tests = [("heldout", [])] + list(cell.extras.items())
    for k, (test_name, extra) in enumerate(tests):
        with open(cell_dir / f"test_{test_name}.log", "w") as out:
            proc = subprocess.run([*_cli(), "test", *cell.args, *cell.test_args, *extra, "--ckpt_path", str(ckpt),
                                   "--trainer.enable_progress_bar", "false"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"cell {cell.name}: test {test_name} failed; see {cell_dir / f'test_{test_name}.log'}")
        result[test_name] = _scalar(ckpt.parent.parent / "test" / f"version_{k}",
                                    study.extra_metric.get(test_name, study.metric))
    result["wall_s"] = round(time.perf_counter() - start, 1)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(result_file)  # whole or absent: a kill leaves no half-written record
    log(f"done {cell.name}: {_summary(result, study)} in {result['wall_s']:.0f} s")
    return result


def _summary(result: dict, study: Study) -> str:
    return ", ".join(f"{k} {result[k]:.3f}" for k in ["heldout", *study.extra_tests] if k in result)


def pool_size(study: Study, workers: int | None = None) -> int:
    """Cells at a time on this machine: ``workers`` if given, else cores / ``threads``,
    and no more than the memory holds at ``memory_gb`` per cell."""
    if workers or study.workers:
        return int(workers or study.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = max(1, cores // study.threads)
    if study.memory_gb:
        total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        n = max(1, min(n, int(total_gb // study.memory_gb)))
    return n


def run_study(study: Study, workers: int | None = None, engine: str = "local", address: str | None = None
              ) -> list[dict]:
    """Every cell, finished ones read back. ``engine="local"``: a pool of :func:`pool_size`
    cells at a time on this machine; ``"ray"``: one Ray task per cell (see :func:`_run_on_ray`)."""
    cells = study.cells()
    todo = [c for c in cells if not _finished(study, c)]
    from tqdm import tqdm

    if engine not in ("local", "ray"):
        raise SystemExit(f"--engine {engine!r}: use local or ray")
    if engine == "ray":
        where = f"Ray ({address or 'a local instance'}), {study.threads} CPU(s) per cell"
    else:
        where = f"{pool_size(study, workers)} at a time, {study.threads} thread(s) each"
    print(f"study {study.name}: {len(cells)} cells, {len(cells) - len(todo)} already done; {where}; "
          f"results in {study.out}", flush=True)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), unit="cell", desc=f"study {study.name}")
    log = lambda msg: bar.write(msg)  # noqa: E731
    if todo and engine == "ray":
        _run_on_ray(study, todo, address, bar)
    elif todo:
        with ThreadPoolExecutor(pool_size(study, workers)) as pool:  # threads wait on the cells' subprocesses
            futures = {pool.submit(run_cell, study, c, log): c for c in todo}
            for f in as_completed(futures):
                f.result()
                bar.update(1)
    bar.close()
    return [json.loads((study.out / "cells" / c.name / "result.json").read_text()) for c in cells]


def _ray_cell(study: Study, cell: Cell, root: str) -> dict:
    """A cell as a Ray task, run from the study's working directory (configs are relative to it)."""
    os.chdir(root)
    return run_cell(study, cell, lambda msg: None)


def _run_on_ray(study: Study, todo: list[Cell], address: str | None, bar) -> None:
    """One Ray task per cell, each reserving ``threads`` CPUs (and ``memory_gb``), so Ray's
    scheduler, not this module, places cells on the cluster's nodes. ``address`` None starts
    a local Ray instance; ``"auto"`` (or ``ray://...``) joins a running cluster, whose nodes
    must all see this working directory and ``out`` (a shared filesystem) and have the
    project installed."""
    try:
        import ray
    except ImportError as e:
        raise SystemExit(f"--engine ray needs ray: pip install -e '.[cluster]' ({e})")
    study.out = study.out.resolve()  # the tasks' paths, wherever they run
    if address is None:
        ray.init(include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    options: dict[str, Any] = {"num_cpus": study.threads, "max_retries": 0}
    if study.memory_gb:
        options["memory"] = int(study.memory_gb * 2**30)
    task = ray.remote(_ray_cell).options(**options)
    running = {task.remote(study, cell, os.getcwd()): cell for cell in todo}
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            cell = running.pop(done[0])
            result = ray.get(done[0])  # a failed cell raises here, naming its log
            bar.write(f"done {cell.name}: {_summary(result, study)} in {result['wall_s']:.0f} s")
            bar.update(1)
    finally:
        ray.shutdown()


def _finished(study: Study, cell: Cell) -> bool:
    f = study.out / "cells" / cell.name / "result.json"
    return f.is_file() and json.loads(f.read_text()).get("digest") == cell.digest


# ---------------------------------------------------------------------------- aggregation
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
        ax.set_xticks(study.x_values)
        ax.set_xticklabels([str(x) for x in study.x_values])
    ax.set_xlabel(study.x_label)
    ax.set_ylabel(f"{key} {study.metric.split('/')[-1]} (IQM, 95% CI)")
    ax.set_ylim(-0.02, 1.05 if study.metric.endswith(("success_rate", "fraction_in_bowls")) else None)
    ax.set_title(study.title or study.name, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=150)
    plt.close(fig)


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
    if a.out:
        study.out = Path(a.out)
    if a.report_only:
        results = [json.loads((study.out / "cells" / c.name / "result.json").read_text())
                   for c in study.cells() if _finished(study, c)]
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
