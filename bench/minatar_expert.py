"""The MinAtar expert table: the guided search against its network alone, the old UCT expert,
random and best-constant play, on the same unseen seeds of the training configuration (or,
with ``--shift``, of the game's shifted configuration, the ``heldout_shift`` suite's).

    python bench/minatar_expert.py [--games breakout,freeway] [--episodes 8] [--uct-episodes 4] [--shift]

Per game, one line (and a markdown row with ``--markdown``): mean return and its standard
error over ``--episodes`` episodes (seeds 2,000,500+, which no suite or data uses; sticky
actions 0.1, or the shift; ``max_episode_steps`` decisions at most, 400 as in conf/minatar.yaml) of

- the search expert of conf/minatar.yaml (its network trained first if not cached in
  ``--data``), and its decisions/s in one process;
- the network alone, greedy (its most probable action);
- the UCT expert the data used before (``UCT_GAME_DEFAULTS``), on ``--uct-episodes``;
- a uniformly random policy, and the best constant action (the best of the game's actions,
  each played on the same seeds).

Episodes run in ``--procs`` processes (one episode each, one torch thread).
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import get_context

import numpy as np
import yaml

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import GAMES, make_env

SEED = 2_000_500


def episode(args: tuple) -> tuple[float, int, float]:
    """(return, decisions, seconds deciding) of one episode of ``policy`` on ``seed``."""
    game, policy, seed, max_steps, net, expert, env_config = args
    import torch

    torch.set_num_threads(1)
    env = make_env(game, seed, **env_config)
    actions = env.minimal_action_set()
    rng = np.random.default_rng(seed)
    if policy in ("search", "network"):
        from pc_lightning.domains.minatar.network import load_net
        from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig

        model = load_net(net)
        planner = GuidedSearch(SearchConfig(**expert), actions, model.evaluate)
        decide = (lambda: planner.search(env).action) if policy == "search" else (lambda: model.greedy(env.state()))
    elif policy == "uct":
        from minatar_uct import MCTS, MCTSConfig, UCT_GAME_DEFAULTS  # beside this script

        uct = MCTS(MCTSConfig(**UCT_GAME_DEFAULTS[game]), actions, seed=seed + 17)
        decide = lambda: uct.search(env).action  # noqa: E731
    elif policy == "random":
        decide = lambda: int(rng.choice(actions))  # noqa: E731
    else:  # a constant action id
        decide = lambda: int(policy)  # noqa: E731
    ret, steps, thinking = 0.0, 0, 0.0
    for _ in range(max_steps):
        start = time.perf_counter()
        a = decide()
        thinking += time.perf_counter() - start
        r, terminal = env.act(a)
        ret += float(r)
        steps += 1
        if terminal:
            break
    return ret, steps, thinking


def shift(arg: str | None, game_shift: dict) -> dict:
    """The configuration changes ``--shift`` asks for: none, the game's (bare flag), or its YAML value."""
    if arg is None:
        return {}
    return dict(game_shift) if arg == "" else dict(yaml.safe_load(arg))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", default=",".join(GAMES))
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--uct-episodes", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=SEED,
                   help="first seed; the table's is 2,000,500. Choose expert settings on a range no suite, "
                        "data or table uses (4,000,000+) and report on this one")
    p.add_argument("--data", default="data", help="where the networks are cached (conf/minatar.yaml's data_dir)")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--markdown", action="store_true", help="also print the table's markdown rows")
    p.add_argument("--expert", default=None, help="search settings over the defaults, e.g. '{simulations: 128}'")
    p.add_argument("--network", default=None, help="network settings over the game's defaults, e.g. '{gamma: 0.999}'")
    p.add_argument("--only", default=None, help="comma-separated policies to run (default: all)")
    p.add_argument("--shift", nargs="?", const="", default=None,
                   help="play the game's shifted configuration (the heldout_shift suite's, GAME_DEFAULTS) instead of "
                        "the training one: how much of a learner's drop under the shift the expert shares; with a "
                        "YAML value, that shift instead, e.g. --shift '{difficulty_ramping: true}'")
    a = p.parse_args()
    rows = []
    with get_context("spawn").Pool(a.procs) as pool:
        for game in a.games.split(","):
            dm = MinAtarDataModule(game=game, data_dir=a.data, expert=yaml.safe_load(a.expert) if a.expert else None,
                                   network=yaml.safe_load(a.network) if a.network else None)
            net = dm.net_path()  # trains the network first if it is not cached
            actions = make_env(game, 0).minimal_action_set()
            policies = {"search": a.episodes, "network": a.episodes, "uct": a.uct_episodes, "random": a.episodes,
                        **{str(c): a.episodes for c in actions}}
            if a.only:
                policies = {k: v for k, v in policies.items() if k in a.only.split(",")}
            env_config = {"sticky_action_prob": dm.sticky_action_prob, "difficulty_ramping": dm.difficulty_ramping,
                          **shift(a.shift, dm.shift)}
            max_steps = env_config.pop("max_episode_steps", a.max_steps)  # a shift may set its own horizon
            jobs = [(name, (game, name, a.seed + i, max_steps, net, dm.expert, env_config))
                    for name, n in policies.items() for i in range(n)]
            out = pool.map(episode, [j for _, j in jobs])
            by: dict[str, list] = {}
            for (name, _), o in zip(jobs, out):
                by.setdefault(name, []).append(o)

            def stat(name: str) -> tuple[float, float]:
                r = np.array([o[0] for o in by[name]])
                return float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0

            consts = [str(c) for c in actions if str(c) in by]
            dps = sum(o[1] for o in by["search"]) / sum(o[2] for o in by["search"]) if "search" in by else 0.0
            cells = {k: stat(k) for k in ("search", "network", "uct", "random") if k in by}
            const = max(consts, key=lambda c: stat(c)[0]) if consts else None
            if const is not None:
                cells["const"] = stat(const)
            line = "  ".join(f"{k} {m:.2f} ± {s:.2f}" for k, (m, s) in cells.items())
            print(f"{game}: {line} (constant: action {const}); search {dps:.0f} decisions/s in 1 process",
                  flush=True)
            if len(cells) == 5:
                rows.append(f"| {game} | " + " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in cells.values())
                            + f" | {cells['search'][0] / max(cells['uct'][0], 1e-9):.1f}x | {dps:.0f} |")
    if a.markdown:
        print("| game | search expert | network alone | old UCT | random | best constant | search / UCT | "
              "search decisions/s |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
