"""Maze evaluation suites: batched rollout episodes on a list of mazes, and BFS probes."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from pc_lightning.domains.maze import codec
from pc_lightning.domains.maze.env import MazeEnv, free_cells, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_procedure
from pc_lightning.eval.rollout import procedure_accuracy
from pc_lightning.eval.suite import EpisodeBatch, EvalSuite, shard


def sample_goal_start(walls: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random goal and a different random start on free cells, (2,) each."""
    cells = free_cells(walls)
    g, s = rng.choice(len(cells), size=2, replace=False)
    return cells[g], cells[s]


class MazeSuite(EvalSuite):
    """Rollout episodes on a list of mazes: ``episodes_per_maze`` random (goal, start) pairs each.

    An episode may take ``2 * optimal + size`` steps before it counts as failed."""

    codec = codec

    def __init__(self, seeds: list[int], size: int, shortcut_prob: float, episodes_per_maze: int,
                 episode_seed: int) -> None:
        self.size = size
        self.max_procedure_steps = size * size
        self.walls, self.goals, self.starts, self.optimal = [], [], [], []
        for seed in seeds:
            walls = tunnel_maze(size, seed, shortcut_prob)
            rng = np.random.default_rng([seed, episode_seed])
            for _ in range(episodes_per_maze):
                goal, start = sample_goal_start(walls, rng)
                self.walls.append(walls)
                self.goals.append(goal)
                self.starts.append(start)
                self.optimal.append(int(bfs_distances(walls, goal)[start[0], start[1]]))
        self.walls, self.goals, self.starts = np.stack(self.walls), np.stack(self.goals), np.stack(self.starts)
        self.optimal = np.array(self.optimal)

    def __len__(self) -> int:
        return len(self.walls)

    def episodes(self, rank: int = 0, world_size: int = 1) -> "MazeEpisodes":
        idx = shard(len(self), rank, world_size)
        env = MazeEnv(self.walls[idx], self.goals[idx], self.starts[idx], 2 * self.optimal[idx] + self.size,
                      self.optimal[idx])
        return MazeEpisodes(env)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        idx = shard(len(self), rank, world_size)
        states = codec.encode_states(self.walls[idx], self.goals[idx], self.starts[idx])
        expert = [bfs_procedure(self.walls[i], self.goals[i], self.starts[i])[0] for i in idx]
        return states, expert

    def procedure_metrics(self, states: np.ndarray, expert: list[np.ndarray], generated: Tensor,
                          lengths: Tensor) -> dict[str, np.ndarray]:
        """``procedure_acc_ties``: per probe, the fraction of the expert's maps the model
        generated equal up to ties (another action equally short where the expert's order
        up, down, left, right chose one); ``procedure_acc`` counts exact maps."""
        return {"procedure_acc_ties": procedure_accuracy(expert, generated, lengths, codec.maps_match_up_to_ties)}


class MazeEpisodes(EpisodeBatch):
    """Adapts :class:`MazeEnv` to the evaluation callback's episode interface."""

    def __init__(self, env: MazeEnv) -> None:
        self.env = env

    @property
    def done(self) -> np.ndarray:
        return self.env.done

    def observe(self, idx: np.ndarray) -> np.ndarray:
        e = self.env
        return codec.encode_states(e.walls[idx], e.goals[idx], e.agents[idx])

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        self.env.step(idx, actions)

    def stats(self) -> dict[str, np.ndarray]:
        e = self.env
        return {"success_rate": e.success.astype(np.float64),
                "path_ratio": (e.steps[e.success] / np.maximum(e.optimal_steps[e.success], 1)).astype(np.float64),
                "return": e.success.astype(np.float64)}
