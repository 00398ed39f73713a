"""Does the MinAtar search expert decide on state the frame does not show?

    python bench/minatar_hidden_state.py [--games asterix,space_invaders] [--episodes 128]

MinAtar's frame omits the games' timers (when enemies next move or spawn, the cannon's
cooldown, ...), while the search plays on snapshots of the real simulator, which hold them. If
the expert's choice rested on them, no learner of the frame alone could fit it. This clones
the expert twice with the same MLP (two layers of 256, Adam, batch 128, ``--steps`` steps),
once on the frame alone and once on the frame plus every ``*timer`` field of the game object
(each one-hot, clipped to 0 .. 15), and reports for each: accuracy on the training states and
on ``--val-episodes`` further expert episodes, and the clone's mean return on 16 unseen seeds
(2,000,500+; the timed clone reads the timers from the simulator as it plays).

Expert episodes run on seeds 5,000,000+ (no suite or data set uses them), with the game's
cached network (trained first if missing, as the data module would) and search settings.
Equal accuracies say the timers do not explain what a clone misses
(docs/notes/2026-12-03-minatar-hidden-state.md).
"""

from __future__ import annotations

import argparse
import time
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import N_CHANNELS, make_env, play_episode
from pc_lightning.domains.minatar.network import load_net
from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig

TIMER_MAX = 16  # a timer's one-hot width (values clipped to 0 .. 15)
EXPERT_SEED, EVAL_SEED = 5_000_000, 2_000_500


def timer_names(game: str) -> list[str]:
    """The game object's integer ``*timer`` fields, sorted (e.g. asterix: move_timer, spawn_timer, ...)."""
    env = make_env(game, 0)
    return sorted(k for k, v in vars(env.env).items() if k.endswith("timer") and isinstance(v, (int, np.integer)))


def timers(env, names: list[str]) -> np.ndarray:
    """(len(names) * TIMER_MAX,) float32: each timer one-hot."""
    v = np.zeros(len(names) * TIMER_MAX, np.float32)
    for i, k in enumerate(names):
        v[i * TIMER_MAX + min(max(int(getattr(env.env, k)), 0), TIMER_MAX - 1)] = 1
    return v


def expert_episode(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One expert episode: frames (T, 10, 10, C), timers (T, K), action indices (T,), return."""
    game, seed, net, expert, max_steps = args
    torch.set_num_threads(1)
    env = make_env(game, seed)
    names, actions = timer_names(game), env.minimal_action_set()
    planner = GuidedSearch(SearchConfig(**expert), actions, load_net(net).evaluate)
    frames, ts, ys, ret = [], [], [], 0.0
    for _ in range(max_steps):
        frames.append(env.state().astype(np.float32))
        ts.append(timers(env, names))
        a = planner.search(env).action
        ys.append(actions.index(a))
        r, terminal = env.act(a)
        ret += float(r)
        if terminal:
            break
    return np.stack(frames), np.stack(ts), np.array(ys), ret


class Clone(torch.nn.Module):
    """MLP on the flattened frame (B, 10, 10, C), with the timers (B, K) appended if ``timed``."""

    def __init__(self, channels: int, n_timer: int, n_actions: int, timed: bool) -> None:
        super().__init__()
        self.timed = timed
        d = channels * 100 + (n_timer if timed else 0)
        self.net = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                       torch.nn.ReLU(), torch.nn.Linear(256, n_actions))

    def forward(self, frames: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = frames.flatten(1)
        return self.net(torch.cat([x, t], 1) if self.timed else x)  # (B, A) logits


def clone_episode(args: tuple) -> float:
    """Return of the clone (a state dict) on one unseen seed, greedy, training configuration."""
    game, state, timed, seed, max_steps = args
    torch.set_num_threads(1)
    env = make_env(game, seed)
    names, actions = timer_names(game), env.minimal_action_set()
    model = Clone(N_CHANNELS[game], len(names) * TIMER_MAX, len(actions), timed)
    model.load_state_dict(state)
    model.eval()

    @torch.no_grad()
    def decide() -> int:
        x = torch.from_numpy(env.state().astype(np.float32))[None]
        return actions[int(model(x, torch.from_numpy(timers(env, names))[None]).argmax())]

    return play_episode(env, decide, max_steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", default="asterix,space_invaders")
    p.add_argument("--episodes", type=int, default=128, help="expert training episodes")
    p.add_argument("--val-episodes", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--max-steps", type=int, default=400, help="decisions per episode at most")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--data", default="data", help="where the networks are cached")
    a = p.parse_args()
    torch.set_num_threads(1)
    with get_context("spawn").Pool(a.procs) as pool:
        for game in a.games.split(","):
            dm = MinAtarDataModule(game=game, data_dir=a.data)
            net = str(dm.net_path())
            t0 = time.time()
            eps = pool.map(expert_episode, [(game, EXPERT_SEED + i, net, dm.expert, a.max_steps)
                                            for i in range(a.episodes + a.val_episodes)])
            print(f"{game}: timers {timer_names(game)}; {len(eps)} expert episodes in {time.time() - t0:.0f} s, "
                  f"mean return {np.mean([e[3] for e in eps]):.2f}", flush=True)

            def cat(es: list, i: int) -> torch.Tensor:
                return torch.from_numpy(np.concatenate([e[i] for e in es]))

            train, val = eps[: a.episodes], eps[a.episodes:]
            x_tr, t_tr, y_tr = cat(train, 0), cat(train, 1), cat(train, 2).long()
            x_va, t_va, y_va = cat(val, 0), cat(val, 1), cat(val, 2).long()
            n_actions = len(make_env(game, 0).minimal_action_set())
            for timed in (False, True):
                torch.manual_seed(0)
                model = Clone(N_CHANNELS[game], t_tr.shape[1], n_actions, timed)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                for _ in range(a.steps):
                    b = torch.randint(len(x_tr), (128,))
                    loss = F.cross_entropy(model(x_tr[b], t_tr[b]), y_tr[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    acc_va = float((model(x_va, t_va).argmax(-1) == y_va).float().mean())
                    sub = slice(0, 10_000)
                    acc_tr = float((model(x_tr[sub], t_tr[sub]).argmax(-1) == y_tr[sub]).float().mean())
                state = {k: v.clone() for k, v in model.state_dict().items()}
                rets = pool.map(clone_episode, [(game, state, timed, EVAL_SEED + i, a.max_steps) for i in range(a.eval_episodes)])
                print(f"{game} {'frame + timers' if timed else 'frame alone   '}: {len(x_tr)} states; accuracy "
                      f"train {acc_tr:.3f}, validation {acc_va:.3f}; clone return {np.mean(rets):.2f} "
                      f"± {np.std(rets, ddof=1) / np.sqrt(len(rets)):.2f}", flush=True)


if __name__ == "__main__":
    main()
