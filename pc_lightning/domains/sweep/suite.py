"""Sweep evaluation suites: batched episodes on given table configurations, expert probes."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.sweep.codec import Codec, split_tokens
from pc_lightning.domains.sweep.env import SweepConfig, SweepEnv
from pc_lightning.domains.sweep.expert import SweepExpert, velocity_bins
from pc_lightning.eval.suite import EpisodeBatch, EvalSuite, shard


def particle_count(seed: int, counts: tuple[int, int]) -> int:
    """The number of particles of configuration ``seed``, in [counts[0], counts[1]]."""
    return int(np.random.default_rng([seed, 11]).integers(counts[0], counts[1] + 1))


def play_expert(seed: int, counts: tuple[int, int], cfg: SweepConfig, codec: Codec, n_bins: int) -> dict:
    """The expert's episode on configuration ``seed``: per decision the state tokens and the
    plan, then the outcome (steps, solved, fraction in bowls)."""
    env = SweepEnv(seed, particle_count(seed, counts), cfg)
    expert = SweepExpert(cfg, env.bowls, n_bins)
    states, plans = [], []
    while not env.done:
        states.append(codec.encode_state(env))
        plans.append(expert.plan(*expert.observe(env)))
        env.step(plans[-1].command)
    return {"states": states, "plans": plans, "steps": env.steps, "solved": env.solved,
            "fraction": env.fraction_in_bowls()}


class SweepEpisodes(EpisodeBatch):
    """E tables stepped together; an action is the 4 bin ids of the two effectors' velocities."""

    def __init__(self, seeds: list[int], counts: tuple[int, int], cfg: SweepConfig, codec: Codec,
                 n_bins: int, expert_steps: np.ndarray) -> None:
        self.envs = [SweepEnv(s, particle_count(s, counts), cfg) for s in seeds]
        self.codec = codec
        self.bins = velocity_bins(cfg, n_bins)
        self.expert_steps = expert_steps
        self.done = np.array([e.done for e in self.envs], dtype=bool)

    def observe(self, idx: np.ndarray) -> np.ndarray:
        return np.stack([self.codec.encode_state(self.envs[i]) for i in idx])

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        commands = self.bins.decode(np.asarray(actions).reshape(len(idx), -1)).reshape(len(idx), 2, 2)
        for i, c in zip(idx, commands):
            self.done[i] = self.envs[i].step(c)

    def stats(self) -> dict[str, np.ndarray]:
        steps = np.array([e.steps for e in self.envs], dtype=np.float64)
        return {"fraction_in_bowls": np.array([e.fraction_in_bowls() for e in self.envs]),
                "success_rate": np.array([float(e.solved) for e in self.envs]),
                "episode_length": steps,
                "length_ratio": steps / np.maximum(self.expert_steps, 1)}


class SweepSuite(EvalSuite):
    """Rollouts on table configurations ``seeds`` (particle counts drawn from ``counts``), and
    probe states from the expert's own episodes on them, with its procedures."""

    def __init__(self, seeds: list[int], counts: tuple[int, int], cfg: SweepConfig, codec: Codec, n_bins: int,
                 n_probes: int = 8) -> None:
        self.seeds, self.counts, self.cfg, self.codec, self.n_bins = list(seeds), tuple(counts), cfg, codec, n_bins
        self.n_probes = n_probes
        self.max_procedure_steps = codec.max_blocks
        self._expert: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.seeds)

    def expert_episode(self, seed: int) -> dict:
        """The expert's episode on configuration ``seed`` (cached): plans, states, outcome."""
        if seed not in self._expert:
            self._expert[seed] = play_expert(seed, self.counts, self.cfg, self.codec, self.n_bins)
        return self._expert[seed]

    def expert_stats(self) -> dict[str, float]:
        """The expert's success, fraction in bowls and episode length on this suite."""
        runs = [self.expert_episode(s) for s in self.seeds]
        return {"success_rate": float(np.mean([r["solved"] for r in runs])),
                "fraction_in_bowls": float(np.mean([r["fraction"] for r in runs])),
                "episode_length": float(np.mean([r["steps"] for r in runs]))}

    def episodes(self, rank: int = 0, world_size: int = 1) -> SweepEpisodes:
        seeds = shard(self.seeds, rank, world_size)
        expert_steps = np.array([self.expert_episode(s)["steps"] for s in seeds], dtype=np.float64)
        return SweepEpisodes(seeds, self.counts, self.cfg, self.codec, self.n_bins, expert_steps)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """One state per configuration, a third of the way into the expert's episode."""
        states, procs = [], []
        for seed in shard(self.seeds, rank, world_size)[: self.n_probes]:
            run = self.expert_episode(seed)
            t = len(run["states"]) // 3
            states.append(run["states"][t])
            procs.append(self.codec.encode_procedure(run["plans"][t]))
        size = self.cfg.size
        return (np.stack(states) if states else np.zeros((0, size, size), np.int64)), procs

    def procedure_metrics(self, states: np.ndarray, expert: list[np.ndarray], generated: Tensor,
                          lengths: Tensor) -> dict[str, np.ndarray]:
        """Per probe: ``source_acc``, x_0 (the floods' sources) exactly the expert's;
        ``move_acc``, the share of effectors whose move in the last generated block (the
        one the action is read from) is the expert's last block's, in the effector's flood."""
        gen = generated.cpu().numpy()
        goal, move = np.full(len(expert), np.nan), np.full(len(expert), np.nan)
        for p, x in enumerate(expert):
            n = int(lengths[p])
            if n == 0:
                goal[p] = move[p] = 0.0
                continue
            goal[p] = float((gen[p, 0] == x[0]).all())
            hits = [split_tokens(gen[p, n - 1][c])[f] == split_tokens(x[-1][c])[f]
                    for c, f in self.codec.effector_cells(states[p])]
            move[p] = float(np.mean(hits))
        return {"source_acc": goal, "move_acc": move}

    animation_tag = "episode_model_left_expert_right"

    @torch.no_grad()
    def animate(self, module) -> np.ndarray:
        """The suite's first configuration played by ``module`` (left) and by the expert
        (right), step by step, with the model's plan drawn over its scene and each panel
        labelled. (T, H, W, 3)."""
        from PIL import Image, ImageDraw

        seed = self.seeds[0]
        run = self.expert_episode(seed)
        env = SweepEnv(seed, particle_count(seed, self.counts), self.cfg)
        bins = velocity_bins(self.cfg, self.n_bins)
        frames = []
        for t in range(self.cfg.max_steps):
            obs = self.codec.encode_state(env)
            state = torch.from_numpy(obs[None]).long().to(module.device)
            action, gen = module.act(state, self.stop_fn, self.max_procedure_steps)
            left = self.codec.scene_rgb(obs)
            if gen is not None and int(gen.lengths[0]) > 0:
                left = self.codec.block_rgb(obs, gen.steps[0, int(gen.lengths[0]) - 1].cpu().numpy())
            right = self.codec.scene_rgb(run["states"][min(t, len(run["states"]) - 1)])
            frame = Image.fromarray(np.concatenate([left, np.full((left.shape[0], 4, 3), 255, np.uint8), right], 1))
            draw = ImageDraw.Draw(frame)
            draw.text((3, left.shape[0] - 12), f"model, step {t} (its last flood)", fill=(0, 0, 0))
            draw.text((left.shape[1] + 7, left.shape[0] - 12), f"expert, step {min(t, run['steps'])}", fill=(0, 0, 0))
            frames.append(np.asarray(frame))
            if env.step(bins.decode(action.cpu().numpy().reshape(-1)).reshape(2, 2)):
                break
        return np.stack(frames)
