"""The scripted sweeping expert, which plans on exactly what the observation shows.

Per decision (each round of step 2 is one block of the procedure, ``codec.py``):

1. *Sources*: the cells that show a loose particle (the observation grid's, ``codec.py``:
   one under a spatula is not shown) and the bowls' centre cells.
2. *Floods*: two breadth-first floods over the table's cells, 8-connected, through every
   cell but the border (where a spatula's centre cannot be): flood 0 from every particle
   source, flood 1 from every bowl. A cell reached in round l holds its move towards a
   cell of round l - 1 (ties: the first in ``MOVES``). The rounds go on until each
   effector is reached at its cell by its flood: an empty spatula by flood 0 (it scoops
   the first particle it touches), a full one by flood 1 (its particle drops into a bowl
   once the spatula is in the bowl's centre cell).
3. *Act*: each effector's velocity, SPEED x the move at its cell in its flood's last
   round ((0, 0) at a source, or where its flood has no source), binned per axis (the
   executed command is the bin's centre): read from the procedure alone, as a maze's
   action is read from its BFS map, and every round follows from the one before and the
   state, so the procedure is what the expert computed to decide.

Why floods and not a planned route or an assignment: ``docs/domains/sweep.md`` (the expert).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pc_lightning.data.bins import UniformBins
from pc_lightning.domains.sweep.env import N_EFFECTORS, SweepConfig

SPEED = 3.5  # cells/s per axis of a move: the outer bins (centre 3.56 with 9 bins over +-4), 0.71 cells a command
#: The eight moves (dx, dy) of a flood's cell towards its goal, in tie-break order; move
#: token m is 2 + its index (``codec.py``).
MOVES = [(0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (1, -1), (-1, 1), (1, 1)]
UNREACHED, AT_GOAL = 0, 1


def to_level(x: np.ndarray) -> np.ndarray:
    """Positions (..., 2) in cells -> levels (..., 2) int64 (half-cell resolution)."""
    return np.floor(np.asarray(x) * 2).astype(np.int64)


def move_velocities(tokens) -> np.ndarray:
    """The spatulas' velocities (2, 2) for the flood tokens at their cells (2,): SPEED along
    the move, (0, 0) at a source or unreached. The act step, shared by the expert and the
    codec's reading of a procedure."""
    v = np.zeros((N_EFFECTORS, 2))
    for k, t in enumerate(tokens):
        if int(t) >= 2:
            v[k] = SPEED * np.array(MOVES[int(t) - 2], dtype=np.float64)
    return v


def velocity_bins(cfg: SweepConfig, n_bins: int) -> UniformBins:
    """The action's bins: each effector's velocity per axis over [-max_speed, max_speed]."""
    return UniformBins(low=(-cfg.max_speed,) * 2 * N_EFFECTORS, high=(cfg.max_speed,) * 2 * N_EFFECTORS,
                       n=(n_bins,) * 2 * N_EFFECTORS)


@dataclass
class Plan:
    """One decision and everything computed to reach it (see the module docstring)."""

    cells: np.ndarray  # (2, 2) each effector's cell (x, y) as the observation shows it
    full: np.ndarray  # (2,) bool: the effector carries a particle (so it follows flood 1)
    dist: np.ndarray  # (2, S, S) per flood and cell (row y, column x): its round, -1 never
    moves: np.ndarray  # (2, S, S) per flood and cell: UNREACHED, AT_GOAL (a source) or 2 + its move in MOVES
    rounds: int  # the procedure's last round L (blocks x_0 .. x_L)
    action: np.ndarray  # (4,) bin ids: effector 0 (vx, vy), effector 1 (vx, vy)
    command: np.ndarray  # (2, 2) the executed velocities (bin centres), cells/s


class SweepExpert:
    """The scripted expert of the module docstring, for one table configuration."""

    def __init__(self, cfg: SweepConfig, bowls: np.ndarray, n_bins: int = 9) -> None:
        self.cfg = cfg
        self.bowl_cells = np.clip(np.floor(np.asarray(bowls)).astype(np.int64), 0, cfg.size - 1)  # (n_bowls, 2)
        self.bins = velocity_bins(cfg, n_bins)

    def flood(self, sources: np.ndarray, also: np.ndarray = np.zeros((0, 2), np.int64)
              ) -> tuple[np.ndarray, np.ndarray]:
        """Breadth-first rounds from the source cells (k, 2) (x, y) over the table's inner
        cells (and the cells ``also``: the effectors', which a spatula at the wall puts on
        the border), until nothing new is reached: per cell (row y, column x)
        its round (-1 never) and its move token (UNREACHED, AT_GOAL at a source, or 2 + the
        index in MOVES of its step towards the round before)."""
        s = self.cfg.size
        free = np.zeros((s, s), dtype=bool)
        free[1:-1, 1:-1] = True
        for x, y in also:
            free[y, x] = True
        dist = np.full((s, s), -1, dtype=np.int64)
        move = np.zeros((s, s), dtype=np.int64)
        front = sorted({(int(x), int(y)) for x, y in sources})
        for x, y in front:
            dist[y, x], move[y, x] = 0, AT_GOAL
        r = 0
        while front:
            r += 1
            new = []
            for x, y in sorted({(x - dx, y - dy) for x, y in front for dx, dy in MOVES}, key=lambda c: (c[1], c[0])):
                if not (0 <= x < s and 0 <= y < s) or not free[y, x] or dist[y, x] >= 0:
                    continue
                for m, (dx, dy) in enumerate(MOVES):  # the first move onto the round before
                    nx, ny = x + dx, y + dy
                    if 0 <= nx < s and 0 <= ny < s and dist[ny, nx] == r - 1:
                        dist[y, x], move[y, x] = r, 2 + m
                        new.append((x, y))
                        break
            front = new
        return dist, move

    def plan(self, particle_pos: np.ndarray, effector_pos: np.ndarray, carrying: np.ndarray) -> Plan:
        """The decision for the particles not in a bowl at ``particle_pos`` (n, 2), effectors
        at ``effector_pos`` (2, 2) (cells), and ``carrying`` (2,), the index into
        ``particle_pos`` of each effector's particle (-1: empty)."""
        size = self.cfg.size
        cells = np.clip(np.floor(np.asarray(effector_pos)).astype(np.int64), 0, size - 1)  # (2, 2) (x, y)
        full = np.asarray(carrying) >= 0
        loose = [i for i in range(len(particle_pos)) if i not in set(int(c) for c in carrying if c >= 0)]
        pcells = np.clip(np.floor(np.asarray(particle_pos, dtype=np.float64).reshape(-1, 2)[loose]).astype(np.int64),
                         0, size - 1)
        shown = [c for c in pcells if not (c == cells).all(1).any()]  # a spatula is drawn over a particle
        dist = np.full((2, size, size), -1, dtype=np.int64)
        moves = np.zeros((2, size, size), dtype=np.int64)
        if shown:
            dist[0], moves[0] = self.flood(np.array(shown), cells)
        dist[1], moves[1] = self.flood(self.bowl_cells, cells)
        at = [int(dist[int(full[k])][cells[k, 1], cells[k, 0]]) for k in range(N_EFFECTORS)]
        rounds = max([a for a in at if a >= 0], default=0)
        v = move_velocities([moves[int(full[k])][cells[k, 1], cells[k, 0]] for k in range(N_EFFECTORS)])
        action = self.bins.encode(v.reshape(-1))
        return Plan(cells, full, dist, moves, rounds, action, self.bins.decode(action).reshape(N_EFFECTORS, 2))

    def observe(self, env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the plan needs from the env: particles not in a bowl (n, 2), effectors (2, 2),
        and each effector's particle as an index into the first (-1: none)."""
        free = np.flatnonzero(~env.captured)
        where = {int(i): j for j, i in enumerate(free)}
        carrying = np.array([where.get(int(i), -1) if i >= 0 else -1 for i in env.carrying])
        return env.particle_positions()[free], env.effector_positions(), carrying
