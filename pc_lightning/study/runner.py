"""Running a study's cells: each a ``pc-lightning fit`` and ``test`` in a subprocess, in a
local pool or as Ray tasks; a finished cell is recorded and never rerun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pc_lightning.logs import last_scalar, scalars
from pc_lightning.study.config import Cell, Study


def cli_command() -> list[str]:
    """How to run ``pc-lightning`` from this Python: its console script where installed (what
    a user's shell runs), else ``python -m pc_lightning.cli``."""
    script = Path(sys.executable).parent / "pc-lightning"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pc_lightning.cli"]


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
    if finished(study, cell):
        return json.loads(result_file.read_text())
    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # cut off, or made by another definition: start it again
    cell_dir.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(study.threads), "MKL_NUM_THREADS": str(study.threads)}
    where = ["--trainer.logger.init_args.save_dir", str(cell_dir), "--trainer.logger.init_args.name", "run",
             "--trainer.enable_progress_bar", "false"]
    start = time.perf_counter()
    with open(cell_dir / "fit.log", "w") as out:
        proc = subprocess.run([*cli_command(), "fit", *cell.args, *cell.fit_args, *where], stdout=out,
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
            proc = subprocess.run([*cli_command(), "test", *cell.args, *cell.test_args, *extra, "--ckpt_path", str(ckpt),
                                   "--trainer.enable_progress_bar", "false"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"cell {cell.name}: test {test_name} failed; see {cell_dir / f'test_{test_name}.log'}")
        result[test_name] = last_scalar(ckpt.parent.parent / "test" / f"version_{k}",
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
    todo = [c for c in cells if not finished(study, c)]
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


def finished(study: Study, cell: Cell) -> bool:
    """Whether ``cell`` has a result recorded under its current definition (its digest)."""
    f = study.out / "cells" / cell.name / "result.json"
    return f.is_file() and json.loads(f.read_text()).get("digest") == cell.digest
