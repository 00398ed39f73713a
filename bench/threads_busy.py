"""Does a busy core slow a fit by at most about 2x? (issue 30, item 3)

A 60-step fit of ``conf/maze.yaml`` (data cached, no validation), alone and beside
``python3 -c "while True: pass"``, with the thread tuner (the configs' default,
``pc_lightning.threads.CPUThreads``) and with the count fixed by ``OMP_NUM_THREADS``.
Each run is its own ``pc-lightning`` process; the training time (first step to last) and
the whole command's wall time are printed, and the busy/alone ratios. Run it on a quiet
machine (the "alone" runs must be alone):

    python bench/threads_busy.py [--steps 60] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from pc_lightning.study.runner import cli_command

ROOT = Path(__file__).resolve().parents[1]


class TrainClock(Callback):
    """Prints the seconds from the first training step's start to the last one's end, and the
    thread count torch ended with."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if not hasattr(self, "t0"):
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import torch

        print(f"TRAIN_SECONDS {time.perf_counter() - self.t0:.2f} THREADS {torch.get_num_threads()}", flush=True)


def fit(steps: int, omp: str | None, logs: str) -> tuple[float, float, int]:
    """(training seconds, wall seconds, final thread count) of one fit."""
    cmd = [*cli_command(), "fit", "--config", "conf/maze.yaml", "--trainer.max_steps", str(steps),
           "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
           "--trainer.callbacks+=threads_busy.TrainClock", "--trainer.logger.init_args.save_dir", logs]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore"
    if omp:
        env["OMP_NUM_THREADS"] = omp
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    line = next(l for l in out.splitlines() if l.startswith("TRAIN_SECONDS"))
    _, train, _, threads = line.split()
    return float(train), wall, int(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; {args.steps}-step fits of conf/maze.yaml; seconds of training (whole command)")
    modes = [("tuner (default)", None), (f"OMP_NUM_THREADS={cores}", str(cores)), ("OMP_NUM_THREADS=1", "1")]
    with tempfile.TemporaryDirectory() as logs:
        fit(4, None, logs)  # data cached, imports warm
        for name, omp in modes:
            alone = [fit(args.steps, omp, logs) for _ in range(args.repeats)]
            busy_proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                busy = [fit(args.steps, omp, logs) for _ in range(args.repeats)]
            finally:
                busy_proc.kill()
            a_t, a_w = min(r[0] for r in alone), min(r[1] for r in alone)
            b_t, b_w = min(r[0] for r in busy), min(r[1] for r in busy)
            print(f"{name:>22}: alone {a_t:6.1f} ({a_w:5.1f}) threads {alone[-1][2]}, "
                  f"beside a busy core {b_t:6.1f} ({b_w:5.1f}) threads {busy[-1][2]}, "
                  f"ratio {b_t / a_t:.2f} ({b_w / a_w:.2f})", flush=True)


if __name__ == "__main__":
    main()
