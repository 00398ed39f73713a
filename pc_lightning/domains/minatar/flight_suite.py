"""Breakout suites for the flight procedure: episodes on given seeds, configuration and
brick layout; the expert's return on the same episodes; probes with the expert's flight."""

from __future__ import annotations

import numpy as np
import torch
from minatar import Environment
from torch import Tensor

from pc_lightning.domains.minatar.env import make_env
from pc_lightning.domains.minatar.flight import BrickLayout, observe, plan
from pc_lightning.domains.minatar.flight_codec import FlightCodec
from pc_lightning.domains.minatar.suite import MinAtarEpisodes, animate_episode
from pc_lightning.eval.suite import EvalSuite, shard


def expert_return(seeds: list[int], sticky_action_prob: float, difficulty_ramping: bool, max_steps: int,
                  layout: BrickLayout | None) -> float:
    """The flight expert's mean return on these episodes (the reference for ``return_frac_expert``)."""
    scratch = Environment("breakout", sticky_action_prob=0.0)
    total = 0.0
    for seed in seeds:
        env = make_env("breakout", seed, sticky_action_prob, difficulty_ramping, layout)
        for _ in range(max_steps):
            r, terminal = env.act(plan(env, scratch).action)
            total += float(r)
            if terminal:
                break
    return total / max(1, len(seeds))


def strike_frames(frames: np.ndarray) -> np.ndarray:
    """(n, 10, 10, 7) bool frames -> (n,) bool: the frame shows a strike (a brick gone since
    the frame before, or the strike flag), the frames whose rule is not free flight."""
    bricks = frames[..., 3].sum((1, 2))
    gone = np.concatenate([[False], bricks[1:] < bricks[:-1]])
    return gone | frames[..., 6].any((1, 2))


def block_kinds(state: np.ndarray, procedure: np.ndarray, codec: FlightCodec) -> np.ndarray:
    """Per block of a flight procedure (L,): 1 a free-flight frame, 2 a strike frame, 3 the decision."""
    frames = codec.decode_state(np.concatenate([np.asarray(state)[None], procedure[:-1, :10]]))  # f_0 .. f_k
    return np.concatenate([np.where(strike_frames(frames)[1:], 2, 1), [3]])


class FlightSuite(EvalSuite):
    """Rollout episodes of breakout on ``seeds`` (sticky actions, ramping and brick ``layout``
    as given), scored against the flight expert on the same episodes, and probe states a few
    random steps in with the expert's flight."""

    def __init__(self, seeds: list[int], sticky_action_prob: float, difficulty_ramping: bool, max_steps: int,
                 layout: BrickLayout | None = None, n_probes: int = 8, animation_steps: int = 60) -> None:
        self.codec = FlightCodec()
        self.seeds = seeds
        self.sticky_action_prob = sticky_action_prob
        self.difficulty_ramping = difficulty_ramping
        self.max_steps = max_steps
        self.layout = layout
        self.n_probes = n_probes
        self.animation_steps = animation_steps
        self.max_procedure_steps = self.codec.max_blocks
        self._expert_return: float | None = None
        self._probes: dict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = {}

    def _make(self, seed: int) -> Environment:
        return make_env("breakout", seed, self.sticky_action_prob, self.difficulty_ramping, self.layout)

    def expert_return(self) -> float:
        """The expert's mean return over every episode of this suite (all ranks' seeds)."""
        if self._expert_return is None:
            self._expert_return = expert_return(self.seeds, self.sticky_action_prob, self.difficulty_ramping,
                                                self.max_steps, self.layout)
        return self._expert_return

    def episodes(self, rank: int = 0, world_size: int = 1) -> MinAtarEpisodes:
        return MinAtarEpisodes("breakout", shard(self.seeds, rank, world_size), self.sticky_action_prob,
                               self.difficulty_ramping, self.max_steps,
                               lambda env: self.codec.encode_state(observe(env)), self.expert_return() or None,
                               self.layout)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """States 0-29 expert steps into this rank's episodes (the expert plays, so the ball
        is in play), with the expert's flight procedures."""
        key = (rank, world_size)
        if key not in self._probes:
            states, procs = [], []
            scratch = Environment("breakout", sticky_action_prob=0.0)
            for seed in shard(self.seeds, rank, world_size)[: self.n_probes]:
                env = self._make(seed)
                for _ in range(int(np.random.default_rng(seed).integers(0, 30))):
                    _, terminal = env.act(plan(env, scratch).action)
                    if terminal:
                        env = self._make(seed)
                states.append(self.codec.encode_state(observe(env)))
                procs.append(self.codec.encode_procedure(plan(env, scratch)))
            self._probes[key] = (np.stack(states) if states else np.zeros((0, 10, 10), np.int64), procs)
        return self._probes[key]

    def procedure_accuracy(self, expert: list[np.ndarray], generated: Tensor, lengths: Tensor) -> np.ndarray:
        """Per probe: the fraction of the expert's blocks (imagined frames and decision) that
        the model generates exactly at the same position."""
        return self._block_hits(expert, generated, lengths, None)

    def procedure_metrics(self, states: np.ndarray, expert: list[np.ndarray], generated: Tensor,
                          lengths: Tensor) -> dict[str, np.ndarray]:
        """``frame_acc_free`` and ``frame_acc_strike``: the imagined frames generated exactly,
        split by whether the expert's frame is free flight or shows a strike (NaN where a
        probe has none of that kind); ``decision_acc``: the decision block generated exactly."""
        return {"frame_acc_free": self._block_hits(expert, generated, lengths, 1, states),
                "frame_acc_strike": self._block_hits(expert, generated, lengths, 2, states),
                "decision_acc": self._block_hits(expert, generated, lengths, 3, states)}

    def _block_hits(self, expert: list[np.ndarray], generated: Tensor, lengths: Tensor, kind: int | None,
                    states: np.ndarray | None = None) -> np.ndarray:
        gen = generated.cpu().numpy()
        out = np.full(len(expert), np.nan)
        for p, x in enumerate(expert):
            idx = np.arange(len(x))
            if kind is not None:
                idx = idx[block_kinds(states[p], x, self.codec) == kind]
            if len(idx) == 0:
                continue
            n = int(lengths[p])
            out[p] = float(np.mean([i < n and bool((gen[p, i] == x[i]).all()) for i in idx]))
        return out

    animation_tag = "episode_real_left_imagined_right"

    @torch.no_grad()
    def animate(self, module) -> np.ndarray:
        """One episode of this suite's first seed played by ``module``: per step the real frame
        (left) and the model's imagined frame where the ball is about to land (right; blank
        for BC). (T, H, W, 3) uint8."""
        env = self._make(self.seeds[0])
        # the last imagined frame, before the decision
        return animate_episode(env, module, self, lambda: self.codec.encode_state(observe(env)),
                               lambda n: n - 2 if n > 1 else None, "landing (imagined)")
