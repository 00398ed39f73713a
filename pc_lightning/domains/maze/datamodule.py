"""MazeDataModule: BFS expert data on training mazes, rollout suites on held-out mazes."""

from __future__ import annotations

from functools import partial

import numpy as np
from torch import Tensor

from pc_lightning.data import ProcedureDataModule, ProcedureRecords, TokenSpec
from pc_lightning.data.parallel import run_jobs
from pc_lightning.domains.maze import codec
from pc_lightning.domains.maze.env import N_ACTIONS, MazeEnv, check_size, free_cells, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_procedure
from pc_lightning.eval.rollout import procedure_accuracy

#: Seed ranges per split; disjoint by construction, and layouts are checked for equality too.
SEED_BASE = {"train": 0, "val": 1_000_000, "heldout": 2_000_000}


def sample_goal_start(walls: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random goal and a different random start on free cells, (2,) each."""
    cells = free_cells(walls)
    g, s = rng.choice(len(cells), size=2, replace=False)
    return cells[g], cells[s]


def expert_trajectories(maze_seed: int, group: int, size: int, shortcut_prob: float,
                        n_trajectories: int) -> tuple[list, list, list, list]:
    """Every state the BFS expert visits on ``n_trajectories`` random (goal, start) pairs of one maze."""
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
    return states, procedures, actions, [group] * len(states)


def _star(args: tuple) -> tuple:
    fn, *rest = args
    return fn(*rest)


class MazeSuite:
    """Rollout episodes on a list of mazes: ``episodes_per_maze`` random (goal, start) pairs each.

    An episode may take ``2 * optimal + size`` steps before it counts as failed."""

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
        idx = np.arange(rank, len(self), world_size)
        env = MazeEnv(self.walls[idx], self.goals[idx], self.starts[idx], 2 * self.optimal[idx] + self.size,
                      self.optimal[idx])
        return MazeEpisodes(env)

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        return codec.reached_agent(state, step)

    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        idx = np.arange(rank, len(self), world_size)
        states = codec.encode_states(self.walls[idx], self.goals[idx], self.starts[idx])
        expert = [bfs_procedure(self.walls[i], self.goals[i], self.starts[i])[0] for i in idx]
        return states, expert

    def render(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        return codec.render_procedures(state, expert, generated)

    def procedure_metrics(self, expert: list[np.ndarray], generated: Tensor, lengths: Tensor) -> dict[str, np.ndarray]:
        """``procedure_acc_ties``: per probe, the fraction of the expert's maps the model
        generated equal up to ties (another action equally short where the expert's order
        up, down, left, right chose one); ``procedure_acc`` counts exact maps."""
        return {"procedure_acc_ties": procedure_accuracy(expert, generated, lengths, codec.maps_match_up_to_ties)}


class MazeEpisodes:
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


class MazeDataModule(ProcedureDataModule):
    """BFS procedure cloning on tunnel mazes.

    Args:
        size: maze side, 3k+1 (10, 13, 16, ...).
        n_train_mazes, trajectories_per_maze: the expert data (paper regime: 5 x 4).
        n_val_mazes, val_trajectories_per_maze: teacher-forced validation data, on unseen mazes.
        n_heldout_mazes, heldout_episodes_per_maze: rollout suite ``heldout``.
        heldout_size: side of the held-out mazes (default ``size``; larger tests size generalisation).
        train_eval_episodes_per_maze: rollout suite ``train_envs`` on the training mazes (0 = off).
        shortcut_prob: chance of opening each remaining inner wall (loops).
        seed: offsets every seed range (training, validation and held-out mazes stay disjoint).
        workers: processes for expert data generation.
        Others: see :class:`~pc_lightning.data.ProcedureDataModule`.
    """

    domain = "maze"
    generator_version = "2"

    def __init__(self, size: int = 16, n_train_mazes: int = 5, trajectories_per_maze: int = 4,
                 n_val_mazes: int = 5, val_trajectories_per_maze: int = 4, n_heldout_mazes: int = 20,
                 heldout_episodes_per_maze: int = 5, heldout_size: int | None = None,
                 train_eval_episodes_per_maze: int = 5, shortcut_prob: float = 0.1, seed: int = 0,
                 workers: int = 1, variant: str = "pc", window: int | None = 1, n_layers: int = 2,
                 chunk_blocks: int = 4, batch_size: int = 32, num_workers: int = 0, data_dir: str = "data",
                 augment: bool = False) -> None:
        super().__init__(variant=variant, window=window, n_layers=n_layers, chunk_blocks=chunk_blocks,
                         batch_size=batch_size, num_workers=num_workers, data_dir=data_dir, augment=augment)
        check_size(size)
        if heldout_size is not None:
            check_size(heldout_size)
        self.size = size
        self.heldout_size = heldout_size or size
        self.n_mazes = {"train": n_train_mazes, "val": n_val_mazes}
        self.trajectories = {"train": trajectories_per_maze, "val": val_trajectories_per_maze}
        self.n_heldout_mazes = n_heldout_mazes
        self.heldout_episodes_per_maze = heldout_episodes_per_maze
        self.train_eval_episodes_per_maze = train_eval_episodes_per_maze
        self.shortcut_prob = shortcut_prob
        self.seed = seed
        self.workers = workers
        self._suites: dict[str, MazeSuite] | None = None

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec(codec.STATE_VOCAB, codec.STEP_VOCAB, N_ACTIONS)

    def maze_seeds(self, split: str, n: int | None = None) -> list[int]:
        n = self.n_mazes[split] if n is None else n
        return [SEED_BASE[split] + self.seed * 10_000 + i for i in range(n)]

    def generator_config(self, split: str) -> dict:
        return {"size": self.size, "seeds": self.maze_seeds(split), "trajectories": self.trajectories[split],
                "shortcut_prob": self.shortcut_prob}

    def generate(self, split: str) -> ProcedureRecords:
        seeds = self.maze_seeds(split)
        job = partial(expert_trajectories, size=self.size, shortcut_prob=self.shortcut_prob,
                      n_trajectories=self.trajectories[split])
        parts = run_jobs(_star, [(job, s, g) for g, s in enumerate(seeds)], self.workers,
                         f"BFS expert, {split} mazes", unit="maze")
        return ProcedureRecords.from_lists(*(sum((p[k] for p in parts), []) for k in range(4)))

    def augment_fn(self):
        return codec.dihedral_augment

    def eval_suites(self) -> dict[str, MazeSuite]:
        if self._suites is None:
            heldout_seeds = self.maze_seeds("heldout", self.n_heldout_mazes)
            self._suites = {"heldout": MazeSuite(heldout_seeds, self.heldout_size, self.shortcut_prob,
                                                 self.heldout_episodes_per_maze, episode_seed=1)}
            self.check_disjoint(heldout_seeds)
            if self.train_eval_episodes_per_maze > 0:
                self._suites["train_envs"] = MazeSuite(self.maze_seeds("train"), self.size, self.shortcut_prob,
                                                       self.train_eval_episodes_per_maze, episode_seed=2)
        return self._suites

    def check_disjoint(self, heldout_seeds: list[int]) -> None:
        """Assert that no held-out maze has the layout of a training maze."""
        train = {tunnel_maze(self.size, s, self.shortcut_prob).tobytes() for s in self.maze_seeds("train")}
        for s in heldout_seeds:
            layout = tunnel_maze(self.heldout_size, s, self.shortcut_prob).tobytes()
            assert layout not in train, f"held-out maze seed {s} has the layout of a training maze"
