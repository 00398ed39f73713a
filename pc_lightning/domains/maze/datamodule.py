"""MazeDataModule: BFS expert data on training mazes; rollout suites on validation mazes
(checkpoint selection), held-out mazes (the report) and the training mazes (the gap)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pc_lightning.data import ProcedureDataModule
from pc_lightning.data.datamodule import Splits
from pc_lightning.domains.maze import codec
from pc_lightning.domains.maze.env import N_ACTIONS, check_size, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_procedure
from pc_lightning.domains.maze.suite import MazeSuite, sample_goal_start
from pc_lightning.errors import in_range
from pc_lightning.spec import TokenSpec

#: ``train_envs`` rolls out on at most this many training mazes by default, so that its cost
#: does not grow with the training data.
MAX_TRAIN_EVAL_MAZES = 20


def expert_trajectories(maze_seed: int, group: int, size: int, shortcut_prob: float,
                        n_trajectories: int) -> dict[str, list]:
    """Every state the BFS expert visits on ``n_trajectories`` random (goal, start) pairs of
    one maze, as records (``states``, ``procedures``, ``actions``, ``groups``)."""
    walls = tunnel_maze(size, maze_seed, shortcut_prob)
    rng = np.random.default_rng([maze_seed, 7])
    states, procedures, actions = [], [], []
    for _ in range(n_trajectories):
        goal, agent = sample_goal_start(walls, rng)
        dist = bfs_distances(walls, goal)
        while not (agent == goal).all():
            x, a = bfs_procedure(walls, goal, agent, dist)
            states.append(codec.encode_states(walls[None], goal[None], agent[None])[0])
            procedures.append(x)
            actions.append(a)
            agent = agent + np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])[a]
    return {"states": states, "procedures": procedures, "actions": actions, "groups": [group] * len(states)}


class MazeDataModule(ProcedureDataModule):
    """BFS procedure cloning on tunnel mazes (an environment is a maze; its episodes are
    random (goal, start) pairs).

    Args:
        size: maze side, 3k+1 (10, 13, 16, ...).
        heldout_size: side of the held-out mazes (default ``size``; larger tests size generalisation).
        shortcut_prob: chance of opening each remaining inner wall (loops).
        Others (the splits' sizes, ``seed``, ``workers``, the loaders'): see
        :class:`~pc_lightning.data.ProcedureDataModule`. The defaults are the paper's regime:
        5 training mazes x 4 expert episodes; suites on 10 validation mazes x 5 episodes (the
        checkpoint's choice), 20 held-out mazes x 5 (the test set) and the training mazes
        (at most 20) x 5. Seed ranges are disjoint per split, and layouts are checked for
        equality too.
    """

    domain = "maze"
    generator_version = "2"
    default_splits = Splits(n_train=5, train_episodes=4, n_val=5, val_episodes=4, n_val_envs=10, val_envs_episodes=5,
                            n_heldout=20, heldout_episodes=5, n_train_envs=MAX_TRAIN_EVAL_MAZES, train_envs_episodes=5)
    expert_name, environment_name = "BFS expert", "maze"
    expert_records = staticmethod(expert_trajectories)
    #: each suite's stream of (goal, start) pairs per maze
    EPISODE_SEED = {"val_envs": 3, "heldout": 1, "train_envs": 2}

    def __init__(self, size: int = 16, heldout_size: int | None = None, shortcut_prob: float = 0.1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_size(size)
        if heldout_size is not None:
            check_size(heldout_size, "data.init_args.heldout_size")
        in_range(0.0, 1.0, shortcut_prob=shortcut_prob)
        self.size = size
        self.heldout_size = heldout_size or size
        self.shortcut_prob = shortcut_prob

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec(codec.STATE_VOCAB, codec.STEP_VOCAB, N_ACTIONS, hidden_from_steps=[codec.AGENT])

    def generator_config(self, split: str) -> dict:
        return {"size": self.size, "seeds": self.seeds(split), "trajectories": self.sizes.episodes(split),
                "shortcut_prob": self.shortcut_prob}

    def expert_job(self, seed: int, group: int, episodes: int) -> dict[str, Any]:
        return dict(maze_seed=seed, group=group, size=self.size, shortcut_prob=self.shortcut_prob,
                    n_trajectories=episodes)

    def augment_fn(self):
        return codec.dihedral_augment

    def suite_size(self, suite: str) -> int:
        return self.heldout_size if suite == "heldout" else self.size

    def environment_key(self, suite: str, seed: int) -> bytes:
        return tunnel_maze(self.suite_size(suite), seed, self.shortcut_prob).tobytes()

    def make_suite(self, name: str, seeds: list[int], episodes: int) -> MazeSuite:
        return MazeSuite(seeds, self.suite_size(name), self.shortcut_prob, episodes, episode_seed=self.EPISODE_SEED[name])
