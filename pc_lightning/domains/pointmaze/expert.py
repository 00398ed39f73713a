"""The PointMaze expert: the maze's BFS from the goal cell, then a PD controller towards the
next cell of the route, its force binned per axis.

Per decision:

1. *Procedure*: the maze domain's BFS from the goal cell, round by round until the flood
   reaches the ball's cell (``bfs_procedure``: each round's map follows from the one
   before by a local rule; the last holds the move of every reached cell). In the goal
   cell that is x_0 alone.
2. *Target*: the centre of the cell that move leads to from the ball's cell; in the goal
   cell, the goal cell's centre.
3. *Force*: ``clip(kp * (target - pos) - kd * vel, -1, 1)`` per axis, binned
   (:func:`force_bins`), and the bin centre is what the expert executes, so the data is
   exactly its behaviour.

The expert sees the ball as the state's tokens show it (:func:`.codec.quantise`: position
and velocity at their bins' centres), so its force is a function of the state tokens, and
the same state gives the same force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pc_lightning.data.bins import UniformBins
from pc_lightning.domains.maze.env import ACTION_OFFSETS
from pc_lightning.domains.maze.expert import bfs_distances, bfs_maps, bfs_policy, bfs_procedure
from pc_lightning.domains.pointmaze.codec import BallBins, quantise
from pc_lightning.domains.pointmaze.env import PointMazeEpisode, cell_centre


def force_bins(n: int = 5) -> UniformBins:
    """``n`` equal bins per force axis over [-1, 1]; odd ``n`` has a bin centred on 0."""
    return UniformBins((-1.0, -1.0), (1.0, 1.0), (n, n))


@dataclass(frozen=True)
class Decision:
    """One expert decision: the BFS maps x_0..x_L (L+1, H, W) until the flood reaches the ball's
    cell (in the goal cell x_0 alone: the goal's map), or None where not asked for; the
    force's bin ids (2,), and the executed force (bin centres) (2,)."""

    procedure: np.ndarray | None
    bins: np.ndarray
    force: np.ndarray


class PointMazeExpert:
    """BFS route and PD control on one layout and goal (the BFS is computed once per goal)."""

    def __init__(self, walls: np.ndarray, goal_cell: np.ndarray, kp: float = 10.0, kd: float = 1.0,
                 bins: UniformBins | None = None, ball: BallBins | None = BallBins()) -> None:
        self.walls = np.asarray(walls, dtype=bool)
        self.goal_cell = np.asarray(goal_cell)
        self.kp, self.kd = kp, kd
        self.bins = bins or force_bins()
        self.ball = ball  # None: decide on the exact observation (the noisy goal, the exact ball)
        self.dist = bfs_distances(self.walls, self.goal_cell)
        self.policy = bfs_policy(self.dist)

    def target(self, cell: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Where the ball heads from ``cell``: the next route cell's centre, or ``goal`` (x, y)
        in the goal cell (or where the route is undefined)."""
        move = int(self.policy[cell[0], cell[1]])
        if move < 0:
            return np.asarray(goal, dtype=np.float64)
        return cell_centre(np.asarray(cell) + ACTION_OFFSETS[move], self.walls.shape)

    def decide(self, obs: dict[str, np.ndarray], with_procedure: bool = True) -> Decision:
        """The decision for an observation of :meth:`PointMazeEpisode.observe`."""
        if self.ball is not None:
            obs = quantise(obs, self.walls.shape, self.ball)
        cell = obs["cell"]
        procedure = None
        if with_procedure and self.dist[cell[0], cell[1]] > 0:
            procedure, _ = bfs_procedure(self.walls, self.goal_cell, cell, self.dist)
        elif with_procedure:  # in the goal cell: the flood has reached the ball at round 0
            procedure = bfs_maps(self.walls, self.dist, self.policy, 1)
        raw = np.clip(self.kp * (self.target(cell, obs["goal"]) - obs["pos"]) - self.kd * obs["vel"], -1.0, 1.0)
        ids = self.bins.encode(raw)
        return Decision(procedure, ids, self.bins.decode(ids))


def play_expert(episode: PointMazeEpisode, expert: PointMazeExpert | None = None,
                with_procedure: bool = False) -> dict:
    """Play ``episode`` to its end with the expert: ``success``, ``decisions``, and per decision
    the observation and :class:`Decision`."""
    expert = expert or PointMazeExpert(episode.walls, episode.goal_cell)
    observations, decisions = [], []
    while not episode.done:
        obs = episode.observe()
        d = expert.decide(obs, with_procedure)
        observations.append(obs)
        decisions.append(d)
        episode.step(d.force)
    return {"success": episode.success, "decisions": episode.decisions, "observations": observations,
            "plans": decisions}
