"""Is the MinAtar expert learnable? A plain network cloned on its data, against the expert.

    python bench/minatar_learnability.py [--games breakout,asterix] [--episodes 32] [--steps 3000]

The question DESIGN.md asks before any PC-vs-BC comparison: how much of the expert's action
can a network predict from the state, and what return does the clone reach on unseen seeds
of the training configuration? This answers it with a learner that is not the project's: an
MLP of the expert network's shape (two layers of 256 on the flattened frame), trained
supervised on the expert's training states (``--episodes`` episodes, the data module's cache,
generated first if missing) with Adam, batch 128, ``--steps`` steps. Per game, one line:

- ``acc``: accuracy on the validation episodes' states (``--val-episodes``), and the
  majority action's share there;
- ``clone`` and ``expert``: mean return of the clone (greedy) and of the search expert over
  ``--eval-episodes`` unseen seeds (2,000,500+, which no suite or data uses; training
  configuration; at most 400 decisions), and their ratio.

A clone near the expert says the labels are learnable from this much data, so a project
learner that falls short is limited by itself, not by the expert; a clone far below it says
the expert or the data is the problem (docs/results/minatar.md).
"""

from __future__ import annotations

import argparse
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import GAMES, N_CHANNELS, make_env, play_episode, tokens_to_frame
from pc_lightning.domains.minatar.network import PolicyValueNet, frames_to_tensor, load_net
from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig

SEED = 2_000_500


def mlp(game: str, n_actions: int) -> PolicyValueNet:
    """A fresh network of the expert's own shape; its policy logits are the clone's
    (``model(frames)[0]``, (B, C, 10, 10) -> (B, A)); the value head is left untrained."""
    return PolicyValueNet(N_CHANNELS[game], n_actions)


def frames(records, game: str) -> torch.Tensor:
    """A split's state blocks (M, 10, 10) tokens -> (M, C, 10, 10) float frames."""
    return frames_to_tensor(tokens_to_frame(records.states.numpy(), N_CHANNELS[game]))


def clone(game: str, dm: MinAtarDataModule, steps: int, seed: int = 0) -> tuple[PolicyValueNet, float, float]:
    """Train the MLP on the training split; (model, validation accuracy, majority share)."""
    torch.manual_seed(seed)
    actions = make_env(game, 0).minimal_action_set()
    index = {a: i for i, a in enumerate(actions)}
    x_tr, x_va = frames(dm.records["train"], game), frames(dm.records["val"], game)
    y_tr = torch.tensor([index[int(a)] for a in dm.records["train"].actions])
    y_va = torch.tensor([index[int(a)] for a in dm.records["val"].actions])
    model = mlp(game, len(actions))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        b = torch.randint(len(x_tr), (128,))
        loss = F.cross_entropy(model(x_tr[b])[0], y_tr[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(x_va)[0].argmax(-1) == y_va).float().mean())
    majority = float(torch.bincount(y_va).max()) / len(y_va)
    return model.eval(), acc, majority


def episode(args: tuple) -> float:
    """Return of one episode of ``policy`` ("search" or a state dict of the clone) on ``seed``."""
    game, policy, seed, net, expert = args
    torch.set_num_threads(1)
    env = make_env(game, seed)
    actions = env.minimal_action_set()
    if policy == "search":
        planner = GuidedSearch(SearchConfig(**expert), actions, load_net(net).evaluate)
        decide = lambda: planner.search(env).action  # noqa: E731
    else:
        model = mlp(game, len(actions))
        model.load_state_dict(policy)
        model.eval()

        def decide() -> int:
            with torch.no_grad():
                return actions[int(model(frames_to_tensor(env.state()[None]))[0].argmax())]
    return play_episode(env, decide, 400)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", default=",".join(GAMES))
    p.add_argument("--episodes", type=int, default=32, help="expert training episodes (the data module's)")
    p.add_argument("--val-episodes", type=int, default=1)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--data", default="data")
    p.add_argument("--expert", default=None, help="search settings over the game's defaults, e.g. '{score_bin: 1.0}'")
    p.add_argument("--network", default=None, help="network settings over the game's defaults, e.g. '{total_steps: 15000000}'")
    a = p.parse_args()
    torch.set_num_threads(1)
    with get_context("spawn").Pool(a.procs) as pool:
        for game in a.games.split(","):
            dm = MinAtarDataModule(game=game, n_train=a.episodes, n_val=a.val_episodes,
                                   workers=a.procs, data_dir=a.data, variant="bc",
                                   expert=yaml.safe_load(a.expert) if a.expert else None,
                                   network=yaml.safe_load(a.network) if a.network else None)
            dm.prepare_data()
            dm.setup()
            model, acc, majority = clone(game, dm, a.steps)
            seeds = [SEED + i for i in range(a.eval_episodes)]
            state = {k: v.clone() for k, v in model.state_dict().items()}
            net = str(dm.net_path())
            rets = pool.map(episode, [(game, pol, s, net, dm.expert) for pol in ("search", state) for s in seeds])
            expert, cloned = np.mean(rets[: len(seeds)]), np.mean(rets[len(seeds):])
            print(f"{game}: {len(dm.records['train'])} states from {a.episodes} episodes; "
                  f"acc {acc:.3f} (majority {majority:.3f}); clone {cloned:.2f}, expert {expert:.2f}, "
                  f"ratio {cloned / max(expert, 1e-9):.2f}", flush=True)


if __name__ == "__main__":
    main()
