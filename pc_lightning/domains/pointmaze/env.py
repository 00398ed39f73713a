"""PointMaze on the project's tunnel mazes: gymnasium-robotics' ball on MuJoCo, a dependency.

A layout is the maze domain's ``tunnel_maze(size, seed)`` (1 = wall), passed to
gymnasium-robotics' ``PointMaze`` as its ``maze_map``; an episode draws a goal cell and a
different start cell from its own seed (the environment adds its own uniform noise of a
quarter cell to both, from the same seed). One *decision* holds a force for ``repeat``
physics steps (the ball crosses a cell in about 20 steps at full force, so ``repeat=8``
makes 2-3 decisions per cell). The same layout, seeds and forces give the same episode.

Coordinates: cell (row, col) of an H x W layout has its centre at
x = col + 0.5 - W / 2, y = H / 2 - row - 0.5 (gymnasium-robotics' ``Maze``, scaling 1).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from pc_lightning.domains.maze.env import tunnel_maze
from pc_lightning.domains.maze.suite import sample_goal_start

ENV_ID = "PointMaze_UMaze-v3"  # any PointMaze id: the layout comes from ``maze_map``
GOAL_RADIUS = 0.45  # gymnasium-robotics' success distance (cells)


@lru_cache(maxsize=1)
def _register() -> None:
    import contextlib
    import io

    import gymnasium as gym

    with contextlib.redirect_stderr(io.StringIO()):  # its import prints a notice about Adroit hand versions
        import gymnasium_robotics
    gym.register_envs(gymnasium_robotics)


def cell_centre(cell: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre (x, y) of cells (..., 2) (row, col) in an H x W layout, (..., 2) float64."""
    h, w = shape
    cell = np.asarray(cell, dtype=np.float64)
    return np.stack([cell[..., 1] + 0.5 - w / 2, h / 2 - cell[..., 0] - 0.5], -1)


def cell_of(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The (row, col) cell that holds positions (..., 2) (x, y), (..., 2) int64 (clipped to the layout)."""
    h, w = shape
    xy = np.asarray(xy, dtype=np.float64)
    rc = np.stack([np.floor(h / 2 - xy[..., 1]), np.floor(xy[..., 0] + w / 2)], -1).astype(np.int64)
    return np.clip(rc, 0, np.array([h - 1, w - 1]))


class PointMazeEpisode:
    """One episode on one layout: ``observe()`` the ball and goal, ``step(force)`` one decision.

    walls (H, W) bool; ``episode_seed`` draws the goal and start cells and seeds the
    environment's noise; ``max_decisions`` ends the episode unsolved."""

    def __init__(self, walls: np.ndarray, episode_seed: int, max_decisions: int, repeat: int = 8) -> None:
        import gymnasium as gym

        _register()
        self.walls = np.asarray(walls, dtype=bool)
        self.repeat = repeat
        self.max_decisions = max_decisions
        self.goal_cell, self.start_cell = self.cells(self.walls, episode_seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium-robotics' notes on other environments' versions
            self.env = gym.make(ENV_ID, maze_map=self.walls.astype(int).tolist(), continuing_task=False,
                                max_episode_steps=max_decisions * repeat + 1)
        obs, _ = self.env.reset(seed=episode_seed, options={"goal_cell": self.goal_cell,
                                                            "reset_cell": self.start_cell})
        self._obs = obs
        self.decisions = 0
        self.success = False

    @staticmethod
    def cells(walls: np.ndarray, episode_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The goal and start cells (2,) (row, col) that episode ``episode_seed`` draws on ``walls``."""
        return sample_goal_start(np.asarray(walls, dtype=bool), np.random.default_rng([episode_seed, 11]))

    @property
    def done(self) -> bool:
        return self.success or self.decisions >= self.max_decisions

    def observe(self) -> dict[str, np.ndarray]:
        """``pos`` (2,) and ``vel`` (2,) of the ball, ``goal`` (2,) (x, y), and their cells (row, col)."""
        o = self._obs
        pos, vel, goal = o["observation"][:2].copy(), o["observation"][2:].copy(), o["desired_goal"].copy()
        return {"pos": pos, "vel": vel, "goal": goal, "cell": cell_of(pos, self.walls.shape),
                "goal_cell": self.goal_cell.copy()}

    def step(self, force: np.ndarray) -> bool:
        """Hold ``force`` (2,) in [-1, 1] for ``repeat`` physics steps (fewer if the goal is
        reached); returns whether the episode is over."""
        if self.done:
            raise ValueError("step() called on a finished episode")
        for _ in range(self.repeat):
            self._obs, _, _, _, info = self.env.step(np.asarray(force, dtype=np.float32))
            if info["success"]:
                self.success = True
                break
        self.decisions += 1
        return self.done

    def close(self) -> None:
        self.env.close()


def layout(size: int, seed: int, shortcut_prob: float = 0.1) -> np.ndarray:
    """The walls (size, size) bool of layout ``seed``: the maze domain's tunnel maze."""
    return tunnel_maze(size, seed, shortcut_prob)
