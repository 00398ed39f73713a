"""Tokens of the PointMaze domain.

State block (H x W), the maze's grid: FREE, WALL, GOAL per cell, and at the ball's cell one
*ball token* for what the grid cannot show: the ball's position inside its cell (a P x P
grid of sub-cells), its velocity (V bins per axis over [-VMAX, VMAX]) and whether the cell is
the goal's. Step blocks x_0..x_L: the maze's BFS maps (``maze.codec``), unchanged. The
action: a block of two tokens, the force's bins per axis (:func:`.expert.force_bins`).

The ball token is all a learner knows of the ball, so the expert decides on the same
quantised ball (:func:`quantise`): sub-cell and velocity bin centres, and the goal cell's
centre for the goal. Its labels are then a function of the state tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from pc_lightning.data.bins import UniformBins
from pc_lightning.domains.maze import codec as maze_codec
from pc_lightning.domains.maze.codec import STEP_VOCAB, UNREACHED
from pc_lightning.domains.pointmaze.env import cell_centre, cell_of
from pc_lightning.spec import TokenSpec

FREE, WALL, GOAL = 0, 1, 2
BALL = 3  # the first ball token


@dataclass(frozen=True)
class BallBins:
    """How the ball's continuous state becomes one token: ``sub`` x ``sub`` sub-cells and
    ``vel`` bins per velocity axis over [-vmax, vmax] (speeds beyond go to the edge bins)."""

    sub: int = 3
    vel: int = 5
    vmax: float = 5.0

    @property
    def n_ball(self) -> int:
        """Ball tokens: per sub-cell, velocity bins, and on the goal cell or not."""
        return 2 * self.sub * self.sub * self.vel * self.vel

    @property
    def state_vocab(self) -> int:
        return BALL + self.n_ball

    def bins(self, pos: np.ndarray, vel: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ball's cell (2,) (row, col), sub-cell (2,) (row, col) and velocity bins (2,) (x, y)."""
        cell = cell_of(pos, shape)
        corner = cell_centre(cell, shape) + np.array([-0.5, 0.5])  # the cell's top-left corner (x, y)
        frac = np.array([corner[1] - pos[1], pos[0] - corner[0]])  # (down, right) within the cell, [0, 1)
        sub = np.clip(np.floor(frac * self.sub), 0, self.sub - 1).astype(np.int64)
        width = 2 * self.vmax / self.vel
        vb = np.clip(np.floor((np.asarray(vel) + self.vmax) / width), 0, self.vel - 1).astype(np.int64)
        return cell, sub, vb

    def token(self, sub: np.ndarray, vb: np.ndarray, on_goal: bool) -> int:
        k = ((int(sub[0]) * self.sub + int(sub[1])) * self.vel + int(vb[0])) * self.vel + int(vb[1])
        return BALL + k + int(on_goal) * (self.n_ball // 2)

    def untoken(self, token: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The inverse of :meth:`token`: sub-cell (2,), velocity bins (2,), on the goal cell."""
        k = int(token) - BALL
        if not 0 <= k < self.n_ball:
            raise ValueError(f"{token} is not a ball token (they are {BALL}..{BALL + self.n_ball - 1})")
        on_goal, k = divmod(k, self.n_ball // 2)
        k, vy = divmod(k, self.vel)
        k, vx = divmod(k, self.vel)
        sr, sc = divmod(k, self.sub)
        return np.array([sr, sc]), np.array([vx, vy]), bool(on_goal)

    def centres(self, cell: np.ndarray, sub: np.ndarray, vb: np.ndarray, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
        """The position (x, y) and velocity (2,) a token stands for: its bins' centres."""
        corner = cell_centre(cell, shape) + np.array([-0.5, 0.5])
        pos = corner + np.array([(sub[1] + 0.5) / self.sub, -(sub[0] + 0.5) / self.sub])
        width = 2 * self.vmax / self.vel
        return pos, -self.vmax + (np.asarray(vb) + 0.5) * width


def encode_state(walls: np.ndarray, goal_cell: np.ndarray, pos: np.ndarray, vel: np.ndarray,
                 ball: BallBins = BallBins()) -> np.ndarray:
    """State tokens (H, W) uint16 of one observation."""
    tokens = np.where(walls, WALL, FREE).astype(np.uint16)
    tokens[goal_cell[0], goal_cell[1]] = GOAL
    cell, sub, vb = ball.bins(pos, vel, walls.shape)
    tokens[cell[0], cell[1]] = ball.token(sub, vb, bool((cell == goal_cell).all()))
    return tokens


def quantise(obs: dict[str, np.ndarray], shape: tuple[int, int], ball: BallBins = BallBins()) -> dict[str, np.ndarray]:
    """An observation as its tokens show it: the ball at its bins' centres, the goal at its
    cell's centre (what the expert decides on)."""
    cell, sub, vb = ball.bins(obs["pos"], obs["vel"], shape)
    pos, vel = ball.centres(cell, sub, vb, shape)
    return {**obs, "pos": pos, "vel": vel, "cell": cell, "goal": cell_centre(obs["goal_cell"], shape)}


def token_spec(ball: BallBins, force: UniformBins) -> TokenSpec:
    """The domain's spec: the maze's step tokens, an action block of the force's bins, and the
    ball hidden from the steps (shown as FREE, or as GOAL where it sits in the goal cell, so
    the flood starts there), so every decision in an episode shares one procedure."""
    half = ball.n_ball // 2
    return TokenSpec(ball.state_vocab, STEP_VOCAB, force.vocab, hidden_from_steps=list(range(BALL, BALL + ball.n_ball)),
                     hidden_as=[FREE] * half + [GOAL] * half)


def reached_ball(state: Tensor, step: Tensor) -> Tensor:
    """The stop rule: the flood has reached the ball's cell. (B, H, W) x2 -> (B,)."""
    return ((state >= BALL) & (step != UNREACHED)).flatten(1).any(1)


stop_fn = reached_ball  # the core's name (eval.suite.Codec)


def as_maze_state(state: np.ndarray) -> np.ndarray:
    """State tokens as the maze domain's (the ball is its AGENT), for its pictures and metrics."""
    return np.minimum(state, maze_codec.AGENT).astype(np.uint8)


# ------------------------------------------------------------------ augmentation
def _moved(n: int, t: int) -> np.ndarray:
    """Where each cell of an n x n grid goes under dihedral transform t: (n*n,) new flat index."""
    return maze_codec.dihedral(np.arange(n * n).reshape(n, n), t).reshape(-1).argsort()


def _vector_map(n: int, t: int) -> np.ndarray:
    """Bins (n, n) of an (x, y) vector, symmetric about 0, under transform t of the grid: (n, n, 2)
    the new (x bin, y bin). A vector is placed on an n x n grid (row: y falling, column: x)
    and moved with the grid, so it turns as the maze does."""
    moved = _moved(n, t)
    out = np.zeros((n, n, 2), dtype=np.int64)
    for x in range(n):
        for y in range(n):
            r, c = divmod(int(moved[(n - 1 - y) * n + x]), n)
            out[x, y] = (c, n - 1 - r)
    return out


def ball_token_map(ball: BallBins, t: int) -> np.ndarray:
    """State token ids under transform t (the ball's sub-cell and velocity turn with the maze): (state_vocab,)."""
    out = np.arange(ball.state_vocab, dtype=np.int64)
    sub_moved, vel = _moved(ball.sub, t), _vector_map(ball.vel, t)
    for token in range(BALL, ball.state_vocab):
        sub, vb, on_goal = ball.untoken(token)
        sub2 = np.array(divmod(int(sub_moved[sub[0] * ball.sub + sub[1]]), ball.sub))
        out[token] = ball.token(sub2, vel[vb[0], vb[1]], on_goal)
    return out


class DihedralAugment:
    """A random rotation or reflection of a square PointMaze state: the grid, the ball's sub-cell
    and velocity, the BFS maps' moves and the force bins turn together (the physics, the PD
    law and the bins are symmetric; the BFS's tie order is not, as in the maze)."""

    def __init__(self, ball: BallBins, force_bins: int) -> None:
        self.tokens = [ball_token_map(ball, t) for t in range(8)]
        self.force = [_vector_map(force_bins, t) for t in range(8)]
        self.step_tokens = [maze_codec.step_token_map(t) for t in range(8)]

    def __call__(self, state: np.ndarray, steps: np.ndarray, action: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = int(rng.integers(8))
        state = self.tokens[t][maze_codec.dihedral(state, t)]
        steps = self.step_tokens[t][maze_codec.dihedral(steps, t)]
        return (np.ascontiguousarray(state), np.ascontiguousarray(steps),
                self.force[t][int(action[0]), int(action[1])].copy())


def render_procedures(state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
    """The maze's picture of the expert's and the model's BFS maps (the ball drawn as its agent)."""
    return maze_codec.render_procedures(as_maze_state(state), expert, generated)
