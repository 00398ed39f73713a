"""Tunnel mazes as in the procedure-cloning paper's code, and a batched maze environment.

A maze of size W = 3k+1 is a k x k lattice of 2x2 rooms separated by walls one cell
thick. A seeded recursive backtracker opens the wall segment between neighbouring rooms
(a corridor two cells wide); then each remaining inner wall segment is opened with
probability ``shortcut_prob`` to add loops. Wall cells at lattice corners stay closed.
"""

from __future__ import annotations

import numpy as np

from pc_lightning.errors import ConfigError

#: (row, col) offset of each action: up, down, left, right.
ACTION_OFFSETS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)
N_ACTIONS = 4


def check_size(size: int, key: str = "data.init_args.size") -> None:
    """Raise a clear error, naming the config ``key``, unless ``size`` is a valid tunnel-maze
    side (3k+1, k >= 2)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 7 or (size - 1) % 3:
        raise ConfigError(key, f"maze size must be 3k+1 with k >= 2 (7, 10, 13, 16, ..., 31); got {size!r}")


def tunnel_maze(size: int, seed: int, shortcut_prob: float = 0.1) -> np.ndarray:
    """Walls of one tunnel maze, (size, size) bool, True = wall. Deterministic per seed."""
    check_size(size)
    k = (size - 1) // 3
    rng = np.random.default_rng(seed)
    walls = np.ones((size, size), dtype=bool)
    for i in range(k):
        for j in range(k):
            walls[3 * i + 1 : 3 * i + 3, 3 * j + 1 : 3 * j + 3] = False

    def open_between(a: tuple[int, int], b: tuple[int, int]) -> None:
        (i, j), (p, q) = a, b
        if i == p:  # horizontal neighbours: open the wall column between them
            c = 3 * max(j, q)
            walls[3 * i + 1 : 3 * i + 3, c] = False
        else:
            r = 3 * max(i, p)
            walls[r, 3 * j + 1 : 3 * j + 3] = False

    visited = np.zeros((k, k), dtype=bool)
    stack = [(int(rng.integers(k)), int(rng.integers(k)))]
    visited[stack[0]] = True
    carved = set()
    while stack:
        i, j = stack[-1]
        nbrs = [(i + di, j + dj) for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= i + di < k and 0 <= j + dj < k and not visited[i + di, j + dj]]
        if not nbrs:
            stack.pop()
            continue
        nxt = nbrs[int(rng.integers(len(nbrs)))]
        open_between((i, j), nxt)
        carved.add(frozenset(((i, j), nxt)))
        visited[nxt] = True
        stack.append(nxt)
    for i in range(k):
        for j in range(k):
            for nxt in ((i + 1, j), (i, j + 1)):
                if nxt[0] < k and nxt[1] < k and frozenset(((i, j), nxt)) not in carved:
                    if rng.random() < shortcut_prob:
                        open_between((i, j), nxt)
    return walls


def free_cells(walls: np.ndarray) -> np.ndarray:
    """(M, 2) coordinates of the free cells of one maze."""
    return np.argwhere(~walls)


class MazeEnv:
    """E maze episodes stepped together (numpy). Episode e ends at its goal or after
    ``max_steps[e]`` actions; moving into a wall leaves the agent where it is."""

    def __init__(self, walls: np.ndarray, goals: np.ndarray, starts: np.ndarray, max_steps: np.ndarray,
                 optimal_steps: np.ndarray) -> None:
        # walls (E, H, W) bool; goals, starts (E, 2); max_steps, optimal_steps (E,)
        self.walls = walls
        self.goals = goals.astype(np.int64)
        self.agents = starts.astype(np.int64).copy()
        self.max_steps = max_steps
        self.optimal_steps = optimal_steps
        self.steps = np.zeros(len(walls), dtype=np.int64)
        self.success = (self.agents == self.goals).all(1)
        self.done = self.success.copy()

    def __len__(self) -> int:
        return len(self.walls)

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        """Apply ``actions`` (len(idx),) to the running episodes ``idx``."""
        if self.done[idx].any():
            raise ValueError("step() called on finished episodes")
        target = self.agents[idx] + ACTION_OFFSETS[actions]
        blocked = self.walls[idx, target[:, 0], target[:, 1]]
        self.agents[idx] = np.where(blocked[:, None], self.agents[idx], target)
        self.steps[idx] += 1
        self.success[idx] = (self.agents[idx] == self.goals[idx]).all(1)
        self.done[idx] = self.success[idx] | (self.steps[idx] >= self.max_steps[idx])
