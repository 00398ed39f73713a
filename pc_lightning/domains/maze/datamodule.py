"""MazeDataModule: BFS expert data on training mazes; rollout suites on validation mazes
(checkpoint selection), held-out mazes (the report) and the training mazes (the gap)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pc_lightning.data import ProcedureDataModule, ProcedureRecords
from pc_lightning.data.parallel import run_jobs
from pc_lightning.domains.maze import codec
from pc_lightning.domains.maze.env import N_ACTIONS, check_size, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_procedure
from pc_lightning.domains.maze.suite import MazeSuite, sample_goal_start
from pc_lightning.errors import ConfigError, at_least, in_range
from pc_lightning.spec import TokenSpec

#: ``train_envs`` rolls out on at most this many training mazes, so that its cost does not
#: grow with the training data.
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
    """BFS procedure cloning on tunnel mazes.

    Args:
        size: maze side, 3k+1 (10, 13, 16, ...).
        n_train_mazes, trajectories_per_maze: the expert data (paper regime: 5 x 4).
        n_val_mazes, val_trajectories_per_maze: teacher-forced validation data, on unseen mazes.
        n_val_env_mazes, val_env_episodes_per_maze: rollout suite ``val_envs`` on validation
            mazes (the validation seed range, training size): the suite ``best.ckpt`` is chosen on.
        n_heldout_mazes, heldout_episodes_per_maze: rollout suite ``heldout``, the test set:
            reported, never used to choose a checkpoint or a setting.
        heldout_size: side of the held-out mazes (default ``size``; larger tests size generalisation).
        train_eval_episodes_per_maze: rollout suite ``train_envs`` on the training mazes (at
            most the first 20 of them; 0 = off).
        shortcut_prob: chance of opening each remaining inner wall (loops).
        Others (``seed``, ``workers``, the loaders'): see :class:`~pc_lightning.data.ProcedureDataModule`;
        seed ranges are disjoint per split, and layouts are checked for equality too.
    """

    domain = "maze"
    generator_version = "2"

    def __init__(self, size: int = 16, n_train_mazes: int = 5, trajectories_per_maze: int = 4,
                 n_val_mazes: int = 5, val_trajectories_per_maze: int = 4, n_val_env_mazes: int = 10,
                 val_env_episodes_per_maze: int = 5, n_heldout_mazes: int = 20,
                 heldout_episodes_per_maze: int = 5, heldout_size: int | None = None,
                 train_eval_episodes_per_maze: int = 5, shortcut_prob: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_size(size)
        if heldout_size is not None:
            check_size(heldout_size, "data.init_args.heldout_size")
        at_least(1, n_train_mazes=n_train_mazes, trajectories_per_maze=trajectories_per_maze, n_val_mazes=n_val_mazes,
                 val_trajectories_per_maze=val_trajectories_per_maze, n_val_env_mazes=n_val_env_mazes,
                 val_env_episodes_per_maze=val_env_episodes_per_maze, n_heldout_mazes=n_heldout_mazes,
                 heldout_episodes_per_maze=heldout_episodes_per_maze)
        at_least(0, train_eval_episodes_per_maze=train_eval_episodes_per_maze)
        in_range(0.0, 1.0, shortcut_prob=shortcut_prob)
        self.size = size
        self.heldout_size = heldout_size or size
        self.n_mazes = {"train": n_train_mazes, "val": n_val_mazes}
        self.trajectories = {"train": trajectories_per_maze, "val": val_trajectories_per_maze}
        self.n_val_env_mazes = n_val_env_mazes
        self.val_env_episodes_per_maze = val_env_episodes_per_maze
        self.n_heldout_mazes = n_heldout_mazes
        self.heldout_episodes_per_maze = heldout_episodes_per_maze
        self.train_eval_episodes_per_maze = train_eval_episodes_per_maze
        self.shortcut_prob = shortcut_prob

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec(codec.STATE_VOCAB, codec.STEP_VOCAB, N_ACTIONS, hidden_from_steps=[codec.AGENT])

    def maze_seeds(self, split: str, n: int | None = None) -> list[int]:
        """The seeds of ``split``'s mazes (``n``, default: that split's number of data mazes)."""
        return self.seeds(split, self.n_mazes[split] if n is None else n)

    def generator_config(self, split: str) -> dict:
        return {"size": self.size, "seeds": self.maze_seeds(split), "trajectories": self.trajectories[split],
                "shortcut_prob": self.shortcut_prob}

    def generate(self, split: str) -> ProcedureRecords:
        jobs = [dict(maze_seed=s, group=g, size=self.size, shortcut_prob=self.shortcut_prob,
                     n_trajectories=self.trajectories[split]) for g, s in enumerate(self.maze_seeds(split))]
        parts = run_jobs(expert_trajectories, jobs, self.workers, f"BFS expert, {split} mazes", unit="maze")
        return ProcedureRecords.concat(parts)

    def augment_fn(self):
        return codec.dihedral_augment

    def build_suites(self) -> dict[str, MazeSuite]:
        train = {tunnel_maze(self.size, s, self.shortcut_prob).tobytes() for s in self.maze_seeds("train")}
        val_seeds, val = self.new_layouts("val", self.n_val_env_mazes, self.size, train)
        heldout_seeds, _ = self.new_layouts("heldout", self.n_heldout_mazes, self.heldout_size, train | val)
        suites = {
            "val_envs": MazeSuite(val_seeds, self.size, self.shortcut_prob, self.val_env_episodes_per_maze,
                                  episode_seed=3),
            "heldout": MazeSuite(heldout_seeds, self.heldout_size, self.shortcut_prob,
                                 self.heldout_episodes_per_maze, episode_seed=1),
        }
        if self.train_eval_episodes_per_maze > 0:
            train_seeds = self.maze_seeds("train")[:MAX_TRAIN_EVAL_MAZES]
            suites["train_envs"] = MazeSuite(train_seeds, self.size, self.shortcut_prob,
                                             self.train_eval_episodes_per_maze, episode_seed=2)
        return suites

    def new_layouts(self, split: str, n: int, size: int, taken: set[bytes]) -> tuple[list[int], set[bytes]]:
        """The first ``n`` seeds of ``split``'s range whose maze layout is not in ``taken`` (the
        layouts of earlier splits), and their layouts. Seed ranges are disjoint already; on
        large mazes layouts never collide, on tiny ones (7x7 has a handful) they can."""
        seeds, layouts = [], set()
        for s in self.maze_seeds(split, 100 * n + 100):
            layout = tunnel_maze(size, s, self.shortcut_prob).tobytes()
            if layout not in taken:
                seeds.append(s)
                layouts.add(layout)
                if len(seeds) == n:
                    return seeds, layouts
        key = {"val": "n_val_env_mazes", "heldout": "n_heldout_mazes"}.get(split, f"n_{split}_mazes")
        raise ConfigError(f"data.init_args.{key}", f"found only {len(seeds)} {size}x{size} maze layouts for {split} "
                          f"that no earlier split has, of {n} asked for: use larger mazes or fewer of them")
