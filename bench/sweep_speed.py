"""Sweep domain speed, one line each: environment steps/s, expert decisions/s, and batched
rollout actions/s of a policy on 64 tables.

    python bench/sweep_speed.py [--ckpt runs/sweep_pc/version_0/checkpoints/best.ckpt] [--envs 64]

Without --ckpt the policy is a freshly initialised model of conf/sweep.yaml's size (its
episodes run to the step limit; a trained one's end sooner).
"""

import argparse
import time

import numpy as np
import torch
import yaml

from pc_lightning.domains.sweep import SweepDataModule
from pc_lightning.domains.sweep.env import SweepConfig, SweepEnv
from pc_lightning.domains.sweep.expert import SweepExpert
from pc_lightning.domains.sweep.suite import SweepSuite
from pc_lightning.eval import PolicyWithMemory, run_episodes
from pc_lightning.model import ProcedureCloner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--config", default="conf/sweep.yaml")
    p.add_argument("--envs", type=int, default=64)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    cfg = SweepConfig()
    rng = np.random.default_rng(0)
    env, steps, start = SweepEnv(0, 8, cfg), 0, time.perf_counter()
    while time.perf_counter() - start < 3:
        env.step(rng.uniform(-4, 4, (2, 2)))
        steps += 1
        if env.done:
            env = SweepEnv(steps, 8, cfg)
    print(f"environment: {steps / (time.perf_counter() - start):.0f} steps/s (8 particles, 4 physics steps each)")
    decisions, start = 0, time.perf_counter()
    for seed in range(1_000):
        env = SweepEnv(seed, 8, cfg)
        expert = SweepExpert(cfg, env.bowls)
        while not env.done:
            env.step(expert.plan(*expert.observe(env)).command)
            decisions += 1
        if time.perf_counter() - start > 5:
            break
    print(f"expert: {decisions / (time.perf_counter() - start):.0f} decisions/s with the physics, 8 particles")
    dm_args = yaml.safe_load(open(a.config))["data"]["init_args"]
    dm = SweepDataModule(**{k: v for k, v in dm_args.items() if k != "workers"})
    if a.ckpt:
        model = ProcedureCloner.load_from_checkpoint(a.ckpt, map_location="cpu")
    else:
        model = ProcedureCloner(spec=dm.spec, **yaml.safe_load(open(a.config))["model"])
    model.eval()
    suite = SweepSuite([2_000_000 + i for i in range(a.envs)], (4, 8), cfg, dm.codec, dm.n_bins)
    for s in suite.seeds:  # the expert's episodes (for length_ratio) outside the timing
        suite.expert_episode(s)
    episodes = suite.episodes()
    policy = PolicyWithMemory(model, len(suite), suite.stop_fn, suite.max_procedure_steps)
    start = time.perf_counter()
    stats = run_episodes(episodes, policy)
    seconds = time.perf_counter() - start
    print(f"rollouts ({model.hparams.variant}): {policy.actions / seconds:.0f} actions/s ({a.envs} tables in "
          f"parallel, fraction in bowls {np.mean(stats['fraction_in_bowls']):.2f}, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
