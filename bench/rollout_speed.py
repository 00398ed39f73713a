"""Rollout speed of the learned policy: actions/s and episodes/s with E mazes stepped together.

    python bench/rollout_speed.py [--ckpt runs/maze_pc/version_0/checkpoints/best.ckpt] [--envs 64]

Without --ckpt it times a freshly initialised model of conf/maze.yaml's size (its
procedures are not those of a trained model, so prefer a checkpoint). ``--no-reuse``
regenerates every procedure from scratch at every step.
"""

import argparse
import time

import numpy as np
import torch
import yaml

from pc_lightning.data.datamodule import SEED_BASE
from pc_lightning.domains.maze.suite import MazeSuite
from pc_lightning.eval import PolicyWithMemory, run_episodes
from pc_lightning.model import ProcedureCloner
from pc_lightning.domains.maze import MazeDataModule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--config", default="conf/maze.yaml")
    p.add_argument("--envs", type=int, default=64)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--no-reuse", action="store_true")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    if a.ckpt:
        model = ProcedureCloner.load_from_checkpoint(a.ckpt, map_location="cpu")
    else:
        cfg = yaml.safe_load(open(a.config))
        model = ProcedureCloner(spec=MazeDataModule().spec, **cfg["model"])
    model.eval()
    suite = MazeSuite([SEED_BASE["heldout"] + i for i in range(a.envs)], a.size, 0.1, 1, episode_seed=1)
    episodes = suite.episodes()
    policy = PolicyWithMemory(model, len(suite), suite.stop_fn, suite.max_procedure_steps, reuse=not a.no_reuse)
    start = time.perf_counter()
    stats = run_episodes(episodes, policy)
    seconds = time.perf_counter() - start
    print(f"rollouts ({model.hparams.variant}, {'no reuse' if a.no_reuse else 'reuse'}): {policy.actions / seconds:.0f} actions/s, "
          f"{len(suite) / seconds:.1f} episodes/s ({a.envs} mazes {a.size}x{a.size} in parallel, "
          f"{policy.forward_blocks / max(policy.actions, 1):.2f} procedure blocks/action, "
          f"success {np.mean(stats['success_rate']):.2f}, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
