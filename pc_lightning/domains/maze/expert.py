"""The BFS expert: flood outward from the goal, one ring of cells per round."""

from __future__ import annotations

from collections import deque

import numpy as np

from pc_lightning.domains.maze.codec import AT_GOAL, BLOCKED, UNREACHED, action_token
from pc_lightning.domains.maze.env import ACTION_OFFSETS


def bfs_distances(walls: np.ndarray, goal: tuple[int, int] | np.ndarray) -> np.ndarray:
    """Shortest-path length from every cell to ``goal``, (H, W) int64; -1 if unreachable."""
    h, w = walls.shape
    dist = np.full((h, w), -1, dtype=np.int64)
    g = (int(goal[0]), int(goal[1]))
    dist[g] = 0
    queue = deque([g])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ACTION_OFFSETS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and not walls[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    return dist


def bfs_policy(dist: np.ndarray) -> np.ndarray:
    """Per-cell optimal action, (H, W) int64, -1 at the goal and unreachable cells.

    A cell at distance d takes the first action, in the order up, down, left, right, whose
    neighbour is at distance d-1: exactly the neighbours reached in the previous BFS round,
    so every map of the procedure follows from the previous one by a local rule.
    """
    h, w = dist.shape
    policy = np.full((h, w), -1, dtype=np.int64)
    padded = np.pad(dist, 1, constant_values=-1)
    for a in reversed(range(len(ACTION_OFFSETS))):  # reversed: the first action wins
        dr, dc = ACTION_OFFSETS[a]
        nbr = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        ok = (dist > 0) & (nbr == dist - 1)
        policy[ok] = a
    return policy


def bfs_maps(walls: np.ndarray, dist: np.ndarray, policy: np.ndarray, rounds: int) -> np.ndarray:
    """x_0..x_{rounds-1}: the map after each BFS round, (rounds, H, W) uint8 step tokens."""
    final = np.where(dist == 0, AT_GOAL, np.where(policy >= 0, action_token(policy), UNREACHED))
    reached_by = np.where(dist >= 0, dist, np.iinfo(np.int64).max)  # round that reaches a cell
    rounds_idx = np.arange(rounds)[:, None, None]
    maps = np.where(reached_by[None] <= rounds_idx, final[None], UNREACHED)
    return np.where(walls[None], BLOCKED, maps).astype(np.uint8)


def bfs_procedure(walls: np.ndarray, goal: np.ndarray, agent: np.ndarray,
                  dist: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The expert's procedure and action for one state.

    Returns x (L+1, H, W) uint8, the maps after rounds 0..L where L is the agent's
    distance to the goal (the flood stops when it reaches the agent), and the action a.
    """
    if dist is None:
        dist = bfs_distances(walls, goal)
    d = int(dist[agent[0], agent[1]])
    if d <= 0:
        raise ValueError(f"agent {tuple(agent)} is at the goal or cannot reach it (distance {d})")
    policy = bfs_policy(dist)
    return bfs_maps(walls, dist, policy, d + 1), int(policy[agent[0], agent[1]])
