"""MinAtar evaluation suites: batched episodes of one game and configuration, search probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from minatar import Environment
from torch import Tensor

from pc_lightning.domains.minatar.codec import Codec
from pc_lightning.domains.minatar.env import frame_tokens, make_env
from pc_lightning.domains.minatar.flight import BrickLayout
from pc_lightning.domains.minatar.network import load_net
from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig
from pc_lightning.eval.pictures import labelled_grid
from pc_lightning.eval.rollout import procedure_accuracy
from pc_lightning.eval.suite import EpisodeBatch, EvalSuite, shard


class MinAtarEpisodes(EpisodeBatch):
    """E MinAtar episodes stepped together (the evaluation callback's episode interface).

    An episode ends at the game's terminal state or after ``max_steps`` actions; ``stats``
    gives its return, and the return as a fraction of ``expert_return`` if one is known.
    ``encode`` turns an environment into its state block; ``layout``: breakout's bricks.
    """

    def __init__(self, game: str, seeds: list[int], sticky_action_prob: float, difficulty_ramping: bool,
                 max_steps: int, encode: Callable[[Environment], np.ndarray], expert_return: float | None = None,
                 layout: BrickLayout | None = None) -> None:
        self.envs = [make_env(game, s, sticky_action_prob, difficulty_ramping, layout) for s in seeds]
        self.encode = encode
        self.max_steps = max_steps
        self.expert_return = expert_return
        self.done = np.zeros(len(seeds), dtype=bool)
        self.returns = np.zeros(len(seeds))
        self.steps = np.zeros(len(seeds), dtype=np.int64)

    def observe(self, idx: np.ndarray) -> np.ndarray:
        return np.stack([self.encode(self.envs[i]) for i in idx])

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        for i, a in zip(idx, actions):
            r, terminal = self.envs[i].act(int(a))
            self.returns[i] += r
            self.steps[i] += 1
            self.done[i] = terminal or self.steps[i] >= self.max_steps

    def stats(self) -> dict[str, np.ndarray]:
        out = {"return": self.returns.copy(), "episode_length": self.steps.astype(np.float64)}
        if self.expert_return:
            out["return_frac_expert"] = self.returns / self.expert_return
        return out


class MinAtarSuite(EvalSuite):
    """Rollout episodes of one game on given seeds and configuration, plus probe states whose
    procedure the expert provides (for ``procedure_acc`` and the images)."""

    def __init__(self, game: str, seeds: list[int], sticky_action_prob: float, difficulty_ramping: bool,
                 max_steps: int, expert: dict[str, Any], net: str, expert_return: float | None = None,
                 n_probes: int = 8, animation_steps: int = 60, layout: BrickLayout | None = None) -> None:
        self.game = game
        self.layout = layout
        self.codec = Codec(game)
        self.seeds = seeds
        self.sticky_action_prob = sticky_action_prob
        self.difficulty_ramping = difficulty_ramping
        self.max_steps = max_steps
        self.expert = expert
        self.net = net  # the search's network (a cached file)
        self.expert_return = expert_return
        self.n_probes = n_probes
        self.animation_steps = animation_steps
        self.max_procedure_steps = self.codec.procedure_blocks(SearchConfig(**expert).pv_depth)
        self._probes: dict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = {}

    def episodes(self, rank: int = 0, world_size: int = 1) -> MinAtarEpisodes:
        return MinAtarEpisodes(self.game, shard(self.seeds, rank, world_size), self.sticky_action_prob,
                               self.difficulty_ramping, self.max_steps,
                               lambda env: self.codec.encode_state(frame_tokens(env.state())), self.expert_return,
                               self.layout)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """States a few random steps into this rank's episodes, with the expert's procedures."""
        key = (rank, world_size)
        if key not in self._probes:
            states, procs = [], []
            evaluate = load_net(Path(self.net)).evaluate
            for seed in shard(self.seeds, rank, world_size)[: self.n_probes]:
                env = make_env(self.game, seed, self.sticky_action_prob, self.difficulty_ramping, self.layout)
                rng = np.random.default_rng(seed)
                actions = env.minimal_action_set()
                for _ in range(int(rng.integers(0, 30))):
                    _, terminal = env.act(int(rng.choice(actions)))
                    if terminal:
                        env.reset()
                planner = GuidedSearch(SearchConfig(**self.expert), actions, evaluate)
                frame = frame_tokens(env.state())
                states.append(self.codec.encode_state(frame))
                procs.append(self.codec.encode_procedure(planner.search(env), frame))
            self._probes[key] = (np.stack(states) if states else np.zeros((0, 10, 10), np.int64), procs)
        return self._probes[key]

    def procedure_accuracy(self, expert: list[np.ndarray], generated: Tensor, lengths: Tensor) -> np.ndarray:
        """Per probe: the fraction of the search's imagined frames (along the PV) that the model
        imagines exactly at the same position."""
        first = self.codec.first_imagined
        return procedure_accuracy([x[first:, :10] for x in expert], generated[:, first:, :10], lengths - first)

    animation_tag = "episode_real_left_imagined_right"

    @torch.no_grad()
    def animate(self, module) -> np.ndarray:
        """One episode of this suite's first seed played by ``module``: per step the real
        frame (left) and the frame the model imagines after its action (right; blank for BC).
        (T, 80, 164, 3) uint8."""
        env = make_env(self.game, self.seeds[0], self.sticky_action_prob, self.difficulty_ramping, self.layout)
        j = self.codec.first_imagined  # the first PV block: the frame after the action taken
        return animate_episode(env, module, self, lambda: self.codec.encode_state(frame_tokens(env.state())),
                               lambda n: j if n > j else None, "imagined")


def animate_episode(env, module, suite, observe: Callable[[], np.ndarray], imagined_at: Callable[[int], int | None],
                    label: str) -> np.ndarray:
    """Frames (T, 80, 164, 3) uint8 of ``module`` playing ``env`` for at most
    ``suite.animation_steps`` decisions: per step the real frame (left; ``observe()`` gives the
    state tokens, rows 0-9 the frame) and the imagined frame at procedure block
    ``imagined_at(length)`` of the model's procedure (right; blank for BC or None)."""
    codec = suite.codec
    frames = []
    for _ in range(suite.animation_steps):
        obs = observe()
        state = torch.from_numpy(obs[None]).long().to(module.device)
        action, gen = module.act(state, suite.stop_fn, suite.max_procedure_steps)
        if gen is None and module.uses_procedure:
            gen = module.generate_procedure(state, suite.stop_fn, suite.max_procedure_steps)
        imagined = np.zeros((80, 80, 3), dtype=np.uint8)
        at = None if gen is None else imagined_at(int(gen.lengths[0]))
        if at is not None:
            imagined = codec.frame_rgb(gen.steps[0, at, :10].cpu().numpy())
        frames.append(labelled_grid([(f"t={len(frames)}", [codec.frame_rgb(obs[:10]), imagined])],
                                    ["real", label if module.uses_procedure else "(BC: none)"], codec.colour_key()))
        _, terminal = env.act(int(action[0]))
        if terminal:
            break
    return np.stack(frames)
