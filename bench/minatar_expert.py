"""MCTS expert speed and strength per MinAtar game, next to random and constant-action play.

    python bench/minatar_expert.py [--games breakout,freeway] [--decisions 200] [--episodes 8]

Per game, one line: expert decisions/s in one process and with every core (one search
per process, all busy), and the mean return over ``--episodes`` episodes (training
configuration, ``max_episode_steps`` of conf/minatar.yaml, unseen seeds) of a uniformly
random policy and of the best constant action. The expert's own return is the mean over
its training episodes, read from the default data of conf/minatar.yaml once generated
(``pc-lightning fit --config conf/minatar.yaml --data.init_args.game GAME``).
"""

import argparse
import os
import time
from multiprocessing import get_context

import numpy as np

from pc_lightning.data import ProcedureRecords
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.datamodule import GAME_DEFAULTS, SEED_BASE
from pc_lightning.domains.minatar.env import GAMES, make_env
from pc_lightning.domains.minatar.expert import MCTS, MCTSConfig


def decisions_per_s(game: str, n: int, seed: int = 0) -> float:
    env = make_env(game, 4242 + seed)
    planner = MCTS(MCTSConfig(**GAME_DEFAULTS[game]["expert"]), env.minimal_action_set(), seed=seed)
    start = time.perf_counter()
    for _ in range(n):
        _, terminal = env.act(planner.search(env).action)
        if terminal:
            env.reset()
    return n / (time.perf_counter() - start)


def _dps(args: tuple) -> float:
    return decisions_per_s(*args)


def policy_return(game: str, policy, episodes: int, max_steps: int) -> float:
    rets = []
    for i in range(episodes):
        env = make_env(game, SEED_BASE["heldout"] + 500 + i)
        rng = np.random.default_rng(i)
        actions = env.minimal_action_set()
        ret = 0.0
        for _ in range(max_steps):
            r, terminal = env.act(policy(rng, actions))
            ret += r
            if terminal:
                break
        rets.append(ret)
    return float(np.mean(rets))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--games", default=",".join(GAMES))
    p.add_argument("--decisions", type=int, default=200)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--expert-from-data", default="data", help="data folder of conf/minatar.yaml's default data")
    a = p.parse_args()
    cores = os.cpu_count() or 1
    for game in a.games.split(","):
        one = decisions_per_s(game, a.decisions)
        with get_context("spawn").Pool(cores) as pool:
            # each process times its own searches (process start-up excluded); they run together
            all_cores = sum(pool.map(_dps, [(game, a.decisions, s) for s in range(cores)]))
        rand = policy_return(game, lambda rng, acts: int(rng.choice(acts)), a.episodes, a.max_steps)
        consts = {int(c): policy_return(game, lambda rng, acts, c=c: int(c), a.episodes, a.max_steps)
                  for c in make_env(game, 0).minimal_action_set()}
        best_c = max(consts, key=consts.get)
        cached = MinAtarDataModule(game=game, data_dir=a.expert_from_data).cache_path("train")
        expert = ProcedureRecords.load(cached).meta["expert_return"] if cached.exists() else None
        print(f"{game}: expert {one:.0f} decisions/s in 1 process, {all_cores:.0f}/s on {cores} cores; "
              f"expert return {'n/a (no data yet)' if expert is None else f'{expert:.1f}'}; random {rand:.1f}; "
              f"best constant action {best_c} {consts[best_c]:.1f}", flush=True)


if __name__ == "__main__":
    main()
