"""The scripted sweeping expert, which plans on exactly what the observation shows.

Positions are known at the observation's resolution, half a cell (a *level*: level k is
the position (k + 0.5) / 2), and every quantity of the plan is computed from those levels,
so the expert's decision is a function of the observation and a learner can reproduce it.
Per decision, in order (each step is one block of the procedure, ``codec.py``):

1. *Locate*: the particles not yet in a bowl and the effectors, by level, particles in
   raster order; a particle on a spatula lies at the spatula's level.
2. *Assign*: each particle's bowl (the nearest one), and each effector's target: the
   particle it carries, or, for the empty ones, the particles not carried by anyone, one
   each, the pair with the least total distance (one particle left: the nearer effector).
3. *Plan*: each effector's waypoint, ROUTE_STEPS levels along the shortest route
   (8-connected, over the levels, on the table and clear of the other particles) to its
   target (nearer if the target is nearer): the target's bowl for a full spatula, the
   particle itself for an empty one (it scoops the particle on contact). Its *step*, the
   waypoint minus the effector's level, is then at most ROUTE_STEPS levels per axis.
4. *Act*: each effector's velocity, ``gain`` x the step in cells, its norm clipped to ``max_speed``,
   binned per axis (the executed command is the bin's centre): a function of the step
   alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pc_lightning.data.bins import UniformBins
from pc_lightning.domains.sweep.env import N_EFFECTORS, SweepConfig

GAIN = 3.0  # 1/s: velocity per cell of distance to the waypoint
ROUTE_STEPS = 3  # levels along the route to the push point per waypoint
NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def to_level(x: np.ndarray) -> np.ndarray:
    """Positions (..., 2) in cells -> levels (..., 2) int64 (half-cell resolution)."""
    return np.floor(np.asarray(x) * 2).astype(np.int64)


def from_level(level: np.ndarray) -> np.ndarray:
    """Levels -> the positions they stand for, the centre of each half cell."""
    return (np.asarray(level, dtype=np.float64) + 0.5) / 2


def velocity_bins(cfg: SweepConfig, n_bins: int) -> UniformBins:
    """The action's bins: each effector's velocity per axis over [-max_speed, max_speed]."""
    return UniformBins(low=(-cfg.max_speed,) * 2 * N_EFFECTORS, high=(cfg.max_speed,) * 2 * N_EFFECTORS,
                       n=(n_bins,) * 2 * N_EFFECTORS)


@dataclass
class Plan:
    """One decision and everything computed to reach it, in levels (see the module docstring)."""

    particles: np.ndarray  # (n, 2) levels of the particles not in a bowl, raster order (by y, then x)
    carried_by: np.ndarray  # (n,) the effector carrying each particle, -1 none
    effectors: np.ndarray  # (2, 2) levels
    bowl_of: np.ndarray  # (n, 2) levels of each particle's bowl
    target: np.ndarray  # (2,) each effector's particle (row of ``particles``), -1 none
    owner: np.ndarray  # (n,) the effector that targets each particle, -1 none
    waypoints: np.ndarray  # (2, 2) levels, at most ROUTE_STEPS from the effector's per axis
    action: np.ndarray  # (4,) bin ids: effector 0 (vx, vy), effector 1 (vx, vy)
    command: np.ndarray  # (2, 2) the executed velocities (bin centres), cells/s


class SweepExpert:
    """The scripted expert of the module docstring, for one table configuration."""

    def __init__(self, cfg: SweepConfig, bowls: np.ndarray, n_bins: int = 9) -> None:
        self.cfg = cfg
        self.bowl_levels = to_level(bowls)  # (n_bowls, 2): the bowls as the observation shows them
        self.bins = velocity_bins(cfg, n_bins)
        self.contact = cfg.particle_radius + cfg.effector_radius
        self.grid = 2 * cfg.size  # levels per axis

    def free_cells(self, obstacles: np.ndarray, clearance: np.ndarray) -> np.ndarray:
        """(G, G) bool over the levels: where an effector's centre may be, on the table and at
        least ``clearance`` (k,) from each obstacle particle (k, 2)."""
        centres = from_level(np.arange(self.grid))  # (G,)
        xy = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1)  # (G, G, 2): [row y, col x] -> (x, y)
        lo, hi = self.cfg.effector_radius, self.cfg.size - self.cfg.effector_radius
        free = ((xy >= lo) & (xy <= hi)).all(-1)
        for o, c in zip(obstacles, clearance):
            free &= np.linalg.norm(xy - o, axis=-1) >= c
        return free

    def route(self, e: np.ndarray, b: np.ndarray, free: np.ndarray) -> np.ndarray:
        """The point ROUTE_STEPS levels along a shortest 8-connected path over ``free`` from
        the effector at e to the push point b (cells); where no path exists, ROUTE_STEPS
        levels straight towards b (per axis)."""
        goal, start = to_level(b)[::-1], to_level(e)[::-1]  # (row, col)
        free = free.copy()
        free[tuple(goal)] = free[tuple(start)] = True
        dist = np.full((self.grid + 2, self.grid + 2), np.inf)  # padded by one: no wrap-around
        dist[goal[0] + 1, goal[1] + 1] = 0.0
        inner = np.pad(free, 1, constant_values=False)
        for _ in range(self.grid * self.grid):
            near = np.min([np.roll(np.roll(dist, dy, 0), dx, 1) for dy, dx in NEIGHBOURS], axis=0) + 1
            new = np.where(inner, np.minimum(dist, near), np.inf)
            if np.array_equal(new, dist) or np.isfinite(new[start[0] + 1, start[1] + 1]):
                dist = new
                break
            dist = new
        here = start + 1
        if not np.isfinite(dist[tuple(here)]):
            step = np.clip(goal - start, -ROUTE_STEPS, ROUTE_STEPS)
            return from_level((start + step)[::-1])
        for _ in range(ROUTE_STEPS):
            if dist[tuple(here)] == 0:
                break
            steps = [here + np.array(n) for n in NEIGHBOURS]
            here = min(steps, key=lambda c: dist[tuple(c)])
        return from_level((here - 1)[::-1])

    def waypoint(self, e: np.ndarray, goal: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Where an effector at e goes on its way to ``goal``, clear of the particles ``others`` (cells)."""
        return self.route(e, goal, self.free_cells(others, np.full(len(others), self.contact)))

    def plan(self, particle_pos: np.ndarray, effector_pos: np.ndarray, carrying: np.ndarray) -> Plan:
        """The decision for the particles not in a bowl at ``particle_pos`` (n, 2), effectors
        at ``effector_pos`` (2, 2) (cells, quantized to levels first), and ``carrying`` (2,),
        the index into ``particle_pos`` of each effector's particle (-1: empty)."""
        pos = np.asarray(particle_pos, dtype=np.float64).reshape(-1, 2).copy()
        for k, i in enumerate(carrying):
            if i >= 0:
                pos[i] = effector_pos[k]  # under the spatula
        pl = to_level(pos)
        order = np.lexsort((pl[:, 0], pl[:, 1])) if len(pl) else np.zeros(0, dtype=np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        pl = pl[order]
        carried_by = np.full(len(pl), -1, dtype=np.int64)
        for k, i in enumerate(carrying):
            if i >= 0:
                carried_by[rank[i]] = k
        el = to_level(effector_pos)
        p, e = from_level(pl), from_level(el)
        bowls = from_level(self.bowl_levels)
        n = len(p)
        bowl_idx = np.linalg.norm(p[:, None] - bowls[None], axis=-1).argmin(1) if n else np.zeros(0, np.int64)
        g = bowls[bowl_idx]
        target = np.full(N_EFFECTORS, -1, dtype=np.int64)
        for i in np.flatnonzero(carried_by >= 0):
            target[carried_by[i]] = i
        empty = [k for k in range(N_EFFECTORS) if target[k] < 0]
        loose = np.flatnonzero(carried_by < 0)
        if empty and len(loose):
            cost = np.linalg.norm(e[empty][:, None] - p[loose][None], axis=-1)  # (empty, loose)
            if len(empty) == 1 or len(loose) == 1:
                k, i = np.unravel_index(int(cost.argmin()), cost.shape)
                target[empty[k]] = loose[i]
            else:
                total = cost[0][:, None] + cost[1][None]
                np.fill_diagonal(total, np.inf)
                i, j = np.unravel_index(int(total.argmin()), total.shape)
                target[empty[0]], target[empty[1]] = loose[i], loose[j]
        owner = np.full(n, -1, dtype=np.int64)
        waypoints = e.copy()
        for k in range(N_EFFECTORS):
            t = target[k]
            if t < 0:
                continue
            owner[t] = k
            goal = g[t] if carried_by[t] == k else p[t]
            others = np.array([p[i] for i in range(n) if i != t and carried_by[i] < 0]).reshape(-1, 2)
            waypoints[k] = self.waypoint(e[k], goal, others)
        wl = to_level(waypoints)
        v = GAIN * (wl - el) / 2  # from the step in levels: what the procedure holds
        speed = np.linalg.norm(v, axis=1, keepdims=True)
        v = v * np.minimum(1.0, self.cfg.max_speed / np.maximum(speed, 1e-9))
        action = self.bins.encode(v.reshape(-1))
        return Plan(pl, carried_by, el, self.bowl_levels[bowl_idx], target, owner, wl, action,
                    self.bins.decode(action).reshape(N_EFFECTORS, 2))

    def observe(self, env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the plan needs from the env: particles not in a bowl (n, 2), effectors (2, 2),
        and each effector's particle as an index into the first (-1: none)."""
        free = np.flatnonzero(~env.captured)
        where = {int(i): j for j, i in enumerate(free)}
        carrying = np.array([where.get(int(i), -1) if i >= 0 else -1 for i in env.carrying])
        return env.particle_positions()[free], env.effector_positions(), carrying
