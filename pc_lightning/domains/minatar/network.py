"""A policy/value network per MinAtar game, trained by PPO, cached like the expert data.

The guided search (:mod:`pc_lightning.domains.minatar.search`) uses its policy as the prior
at the root and its value at the leaves. It is trained once per game and configuration on
MinAtar's own ``Environment`` (sticky actions as in the training configuration), by a compact
vectorised PPO (clipped objective, GAE, one shared torso): ``bench/minatar_rl_speed.py``
measured it against stable-baselines3's PPO on the same network and machine, and the numbers
and the choice are in ``docs/domains/minatar.md``.

The artifact is a file ``<data_dir>/minatar-net-<game>-<digest>.pt`` named by a hash of
everything that determines it (:meth:`NetConfig.digest`): a dict of tensors and plain values,
loaded with ``torch.load(weights_only=True)``. Training shows a progress bar and writes a
``.partial.pt`` every ``checkpoint_every`` updates; an interrupted training resumes from it
(the network, the optimiser and the update count; the environments restart on fresh seeds,
so a resumed run is not bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pc_lightning.domains.minatar.env import N_CHANNELS, check_game, make_env

NET_VERSION = "2"  # 2: an MLP on the flattened frame (gymnax-blines' MinAtar PPO network)


@dataclass
class NetConfig:
    """PPO settings and the network's size; every field is part of the artifact's hash.

    total_steps: environment steps of training (the budget; per game in the datamodule's ``GAME_DEFAULTS``).
    n_envs x n_steps: one rollout; epochs x minibatches: passes over it. gamma, gae_lambda,
    clip, ent_coef, vf_coef, max_grad_norm, lr (annealed linearly to 0): PPO's usual.
    hidden, layers: the MLP on the flattened frame (gymnax-blines' MinAtar PPO network; why
    not MinAtar's convolution, and the budgets per game: ``docs/domains/minatar.md``, the network).
    max_episode_steps: an episode is cut there during training (a cut is treated as a
    terminal). sticky_action_prob, difficulty_ramping: the training configuration.
    """

    total_steps: int = 5_000_000
    n_envs: int = 64
    n_steps: int = 128
    epochs: int = 4
    minibatches: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    lr: float = 5e-4
    hidden: int = 256
    layers: int = 2
    max_episode_steps: int = 5000
    sticky_action_prob: float = 0.1
    difficulty_ramping: bool = False
    seed: int = 0

    def digest(self, game: str) -> str:
        blob = json.dumps({"game": game, "version": NET_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class PolicyValueNet(nn.Module):
    """(B, C, 10, 10) float frames -> policy logits (B, A) over the game's minimal action set
    and a value (B,): the discounted return from the state under the policy."""

    def __init__(self, channels: int, n_actions: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        dims = [channels * 100] + [hidden] * layers
        self.torso = nn.Sequential(nn.Flatten(), *[m for i in range(layers)
                                                   for m in (nn.Linear(dims[i], dims[i + 1]), nn.ReLU())])
        self.policy = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.policy.weight, 0.01)
        nn.init.zeros_(self.policy.bias)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        h = self.torso(frames)  # (B, hidden)
        return self.policy(h), self.value(h).squeeze(-1)


def frames_to_tensor(states: list[np.ndarray] | np.ndarray) -> Tensor:
    """MinAtar observations (B, 10, 10, C) bool -> (B, C, 10, 10) float32."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(states, dtype=np.float32).transpose(0, 3, 1, 2)))


class GameNet:
    """A trained network with the game's minimal action set: ``evaluate(states)`` gives
    log-priors over MinAtar's action ids and values, for the search and for play."""

    def __init__(self, game: str, net: PolicyValueNet, actions: list[int], meta: dict[str, Any]) -> None:
        self.game, self.net, self.actions, self.meta = game, net.eval(), list(actions), meta

    @torch.no_grad()
    def evaluate(self, states: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 10, 10, C) observations -> log-probabilities (B, A) over :attr:`actions`, values (B,)."""
        logits, value = self.net(frames_to_tensor(states))
        return torch.log_softmax(logits, -1).numpy().astype(np.float64), value.numpy().astype(np.float64)

    def greedy(self, state: np.ndarray) -> int:
        """The network's most probable action (a MinAtar action id) in one state."""
        logp, _ = self.evaluate(state[None])
        return self.actions[int(np.argmax(logp[0]))]


def net_path(game: str, config: NetConfig, data_dir: str | Path = "data") -> Path:
    return Path(data_dir) / f"minatar-net-{check_game(game)}-{config.digest(game)}.pt"


def load_net(path: Path) -> GameNet:
    """A cached network; ``weights_only=True`` (a dict of tensors and plain values)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    net = PolicyValueNet(N_CHANNELS[blob["game"]], len(blob["actions"]), cfg["hidden"], cfg["layers"])
    net.load_state_dict(blob["state_dict"])
    return GameNet(blob["game"], net, blob["actions"], blob["meta"])


def get_net(game: str, config: NetConfig | None = None, data_dir: str | Path = "data",
            threads: int | None = None, progress: bool = True) -> GameNet:
    """The cached network of ``game`` under ``config``, trained first if missing (resumed if
    a ``.partial.pt`` exists)."""
    config = config or NetConfig()
    path = net_path(game, config, data_dir)
    if not path.is_file():
        train_net(game, config, path, threads=threads, progress=progress)
    return load_net(path)


class _VecEnv:
    """``n`` MinAtar environments stepped in a loop; an episode that ends is reset at once."""

    def __init__(self, game: str, cfg: NetConfig, seed: int) -> None:
        self.envs = [make_env(game, seed + i, cfg.sticky_action_prob, cfg.difficulty_ramping)
                     for i in range(cfg.n_envs)]
        self.actions = self.envs[0].minimal_action_set()
        self.max_steps = cfg.max_episode_steps
        self.ep_return = np.zeros(cfg.n_envs)
        self.ep_len = np.zeros(cfg.n_envs, dtype=np.int64)
        self.finished: list[float] = []  # returns of episodes that ended

    def observe(self) -> np.ndarray:
        return np.stack([e.state() for e in self.envs])  # (n, 10, 10, C) bool

    def step(self, action_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rewards = np.zeros(len(self.envs), dtype=np.float32)
        dones = np.zeros(len(self.envs), dtype=np.float32)
        for i, (env, a) in enumerate(zip(self.envs, action_idx)):
            r, terminal = env.act(self.actions[int(a)])
            rewards[i] = r
            self.ep_return[i] += r
            self.ep_len[i] += 1
            if terminal or self.ep_len[i] >= self.max_steps:
                dones[i] = 1.0
                self.finished.append(float(self.ep_return[i]))
                self.ep_return[i], self.ep_len[i] = 0.0, 0
                env.reset()
        return rewards, dones


def train_net(game: str, cfg: NetConfig, path: Path, threads: int | None = None, progress: bool = True,
              checkpoint_every: int = 50) -> None:
    """PPO on ``game``; writes the artifact to ``path`` atomically (and ``.partial.pt`` on the way)."""
    check_game(game)
    if threads:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.pt")
    torch.manual_seed(cfg.seed)
    batch = cfg.n_envs * cfg.n_steps
    n_updates = max(1, cfg.total_steps // batch)
    probe = make_env(game, 0)
    actions = probe.minimal_action_set()
    net = PolicyValueNet(N_CHANNELS[game], len(actions), cfg.hidden, cfg.layers)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    start, history, elapsed, resumed_at = 0, [], 0.0, []
    if partial.is_file():
        blob = torch.load(partial, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        start, history, elapsed = blob["update"], blob["history"], blob["elapsed_s"]
        resumed_at = blob["resumed_at"] + [start]
    envs = _VecEnv(game, cfg, seed=10_000_000 + cfg.seed * 100_000 + start * cfg.n_envs)
    obs = envs.observe()
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=n_updates * batch, initial=start * batch, unit="step", unit_scale=True,
               desc=f"PPO network, {game}", disable=not progress)
    mb = batch // cfg.minibatches
    for update in range(start, n_updates):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (1.0 - update / n_updates)
        # ---- rollout: (T, N) arrays
        obs_buf = np.zeros((cfg.n_steps, cfg.n_envs, *obs.shape[1:]), dtype=bool)
        act_buf = np.zeros((cfg.n_steps, cfg.n_envs), dtype=np.int64)
        logp_buf = np.zeros((cfg.n_steps, cfg.n_envs), dtype=np.float32)
        val_buf = np.zeros((cfg.n_steps + 1, cfg.n_envs), dtype=np.float32)
        rew_buf = np.zeros((cfg.n_steps, cfg.n_envs), dtype=np.float32)
        done_buf = np.zeros((cfg.n_steps, cfg.n_envs), dtype=np.float32)
        with torch.no_grad():
            for t in range(cfg.n_steps):
                logits, value = net(frames_to_tensor(obs))
                dist = torch.distributions.Categorical(logits=logits)
                a = dist.sample()
                obs_buf[t], act_buf[t] = obs, a.numpy()
                logp_buf[t], val_buf[t] = dist.log_prob(a).numpy(), value.numpy()
                rew_buf[t], done_buf[t] = envs.step(act_buf[t])
                obs = envs.observe()
            val_buf[-1] = net(frames_to_tensor(obs))[1].numpy()
        # ---- GAE
        adv = np.zeros_like(rew_buf)
        last = np.zeros(cfg.n_envs, dtype=np.float32)
        for t in reversed(range(cfg.n_steps)):
            nonterminal = 1.0 - done_buf[t]
            delta = rew_buf[t] + cfg.gamma * val_buf[t + 1] * nonterminal - val_buf[t]
            last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
            adv[t] = last
        ret = adv + val_buf[:-1]
        # ---- update
        b_obs = frames_to_tensor(obs_buf.reshape(batch, *obs.shape[1:]))
        b_act = torch.from_numpy(act_buf.reshape(batch))
        b_logp = torch.from_numpy(logp_buf.reshape(batch))
        b_adv = torch.from_numpy(adv.reshape(batch))
        b_ret = torch.from_numpy(ret.reshape(batch))
        for _ in range(cfg.epochs):
            perm = torch.randperm(batch)
            for k in range(cfg.minibatches):
                idx = perm[k * mb:(k + 1) * mb]
                logits, value = net(b_obs[idx])
                dist = torch.distributions.Categorical(logits=logits)
                ratio = torch.exp(dist.log_prob(b_act[idx]) - b_logp[idx])
                a_n = b_adv[idx]
                a_n = (a_n - a_n.mean()) / (a_n.std() + 1e-8)
                pg = -torch.min(ratio * a_n, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a_n).mean()
                vf = 0.5 * (value - b_ret[idx]).pow(2).mean()
                loss = pg + cfg.vf_coef * vf - cfg.ent_coef * dist.entropy().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                opt.step()
        recent = envs.finished[-100:]
        if recent:
            history.append([float((update + 1) * batch), float(np.mean(recent))])
        bar.update(batch)
        bar.set_postfix(ret=f"{np.mean(recent):.2f}" if recent else "-")
        done_updates = update + 1
        if done_updates % checkpoint_every == 0 and done_updates < n_updates:
            _save_atomic({"state_dict": net.state_dict(), "optimizer": opt.state_dict(), "update": done_updates,
                          "history": history, "elapsed_s": time.perf_counter() - t0,
                          "resumed_at": resumed_at}, partial)
    bar.close()
    meta = {"train_s": time.perf_counter() - t0, "steps": n_updates * batch, "history": history,
            "final_return": history[-1][1] if history else None, "resumed_at": resumed_at}
    _save_atomic({"game": game, "actions": list(actions), "config": asdict(cfg), "state_dict": net.state_dict(),
                  "meta": meta}, path)
    partial.unlink(missing_ok=True)


def _save_atomic(blob: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
