"""Breakout's flight expert: imagine the ball's flight on the simulator, then meet it.

Before the ball reaches the paddle's row nothing the agent does changes its flight, and
breakout draws no random number after reset, so the simulator's own steps from the current
state (with any action) are the ball's exact future until the step that lands it. The
expert imagines that flight frame by frame, reads the two columns from which a paddle
returns the ball (under the ball on row 8, which keeps its horizontal direction, and where
it would land, which flips it), goes for the one nearer the paddle, and moves towards it.

Every imagined frame follows from the one before by the game's rule, and that rule is
local (a ball moves one cell diagonally; a brick it strikes disappears and turns it back),
provided a frame shows what MinAtar's observation hides: the ball's direction (the trail
shows it except after a strike, a wall or the top) and the strike flag (a ball that has
just struck passes through the next brick). :func:`observe` adds them as channels at the
ball's cell, for every learner alike.

Shifted worlds are brick layouts (:class:`BrickLayout`), set after reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from minatar import Environment

from pc_lightning.domains.minatar.env import restore, snapshot
from pc_lightning.errors import ConfigError

#: Breakout's frame channels (paddle, ball, trail, brick) plus what the frame hides, set at
#: the ball's cell: moving right, moving down, and the strike flag.
FLIGHT_CHANNELS = 7
CH_RIGHT, CH_DOWN, CH_STRIKE = 4, 5, 6
#: MinAtar action ids of breakout's moves.
NOOP, LEFT, RIGHT = 0, 1, 3
#: The longest flight the procedure imagines; a longer one shows its first MAX_FLIGHT
#: frames and then the decision read from the last of them (see :func:`plan`).
MAX_FLIGHT = 48
LANDING_ROW = 8  # the ball's row on the step before it lands on the paddle's row (9)


def observe(env: Environment) -> np.ndarray:
    """The frame with breakout's hidden state: (10, 10, 7) bool (MinAtar's 4 channels, then
    moving right, moving down and the strike flag at the ball's cell)."""
    game = env.env
    frame = np.zeros((10, 10, FLIGHT_CHANNELS), dtype=bool)
    frame[..., :4] = env.state()
    y, x = game.ball_y, game.ball_x
    frame[y, x, CH_RIGHT] = game.ball_dir in (1, 2)
    frame[y, x, CH_DOWN] = game.ball_dir in (2, 3)
    frame[y, x, CH_STRIKE] = bool(game.strike)
    return frame


class Flight(NamedTuple):
    """What the expert computed for one state.

    frames: the imagined frames f_0 (the state) .. f_k, (k+1, 10, 10, 7) bool, f_k the last
        before the ball lands (on row 8, moving down); at most MAX_FLIGHT + 1 frames.
    keep, flip: the columns from which the paddle returns the ball (equal at a wall).
    field: (10,) the action a paddle in each column takes (towards the nearer of the two).
    action: the MinAtar action for the paddle's column.
    landed: whether ``frames`` reach the landing (False: cut at MAX_FLIGHT)."""

    frames: np.ndarray
    keep: int
    flip: int
    field: np.ndarray
    action: int
    landed: bool


def _landing(game: Any) -> tuple[int, int] | None:
    """(keep, flip) if the ball lands on the next step, else None."""
    if game.ball_y != LANDING_ROW or game.ball_dir not in (2, 3):
        return None
    dx = 1 if game.ball_dir == 2 else -1
    return game.ball_x, int(np.clip(game.ball_x + dx, 0, 9))


def action_field(keep: int, flip: int) -> np.ndarray:
    """(10,) MinAtar actions: from column j, towards the nearer of ``keep`` and ``flip``
    (``keep`` on a tie), staying on it."""
    cols = np.arange(10)
    target = np.where(np.abs(cols - flip) < np.abs(cols - keep), flip, keep)
    return np.where(cols < target, RIGHT, np.where(cols > target, LEFT, NOOP)).astype(np.int64)


def plan(env: Environment, scratch: Environment | None = None) -> Flight:
    """The expert's computation on ``env``'s current state (``env`` is not changed;
    ``scratch``, a breakout Environment, is reused for the imagined steps if given).

    A flight longer than MAX_FLIGHT frames is cut there; the decision is then read from the
    last frame as if the ball landed from it: under the ball (its column, both targets)."""
    scratch = scratch or Environment("breakout", sticky_action_prob=0.0)
    restore(scratch, snapshot(env))
    scratch.sticky_action_prob = 0.0
    game = scratch.env
    frames = [observe(scratch)]
    land = _landing(game)
    while land is None and len(frames) <= MAX_FLIGHT:
        game.act(NOOP)  # the game's own step (sticky actions are the wrapper's; the ball ignores the paddle here)
        frames.append(observe(scratch))
        land = _landing(game)
    landed = land is not None
    if not landed:  # cut at f_MAX_FLIGHT: go under the ball
        land = (int(np.argmax(frames[-1][..., 1].any(0))),) * 2
    field = action_field(*land)
    return Flight(np.stack(frames), land[0], land[1], field, int(field[env.env.pos]), landed)


# ---------------------------------------------------------------------------- shifts
LAYOUT_FAMILIES = ("standard", "holes", "thick", "random", "map")


@dataclass(frozen=True)
class BrickLayout:
    """A breakout brick layout, set after every reset (the game still refills rows 1-3 when
    every brick is gone).

    family: ``standard`` (rows 1-3 full, MinAtar's), ``holes`` (the standard rows with a
        fraction ``density`` of their bricks missing), ``thick`` (rows ``rows`` full),
        ``random`` (each cell of rows ``rows`` a brick with probability ``density``), or
        ``map`` (``bricks``, an explicit 10 x 10 0/1 map).
    rows: [first, last] brick rows (inclusive) for thick and random; within 1..7.
    density: holes: fraction missing; random: fraction present.
    The random families draw from the episode's seed, so an episode's layout is fixed."""

    family: str = "standard"
    rows: tuple[int, int] = (1, 3)
    density: float = 0.4
    bricks: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        key = "data.init_args.shift.bricks"
        if self.family not in LAYOUT_FAMILIES:
            raise ConfigError(f"{key}.family", f"must be one of {', '.join(LAYOUT_FAMILIES)}; got {self.family!r}")
        lo, hi = (int(r) for r in self.rows)
        if not 1 <= lo <= hi <= 7:
            raise ConfigError(f"{key}.rows", f"must be [first, last] with 1 <= first <= last <= 7; got {list(self.rows)}")
        object.__setattr__(self, "rows", (lo, hi))
        if not 0.0 <= self.density <= 1.0:
            raise ConfigError(f"{key}.density", f"must be in [0, 1]; got {self.density}")
        if self.family == "map":
            m = np.asarray(self.bricks if self.bricks is not None else [], dtype=np.int64)
            if m.shape != (10, 10) or not np.isin(m, (0, 1)).all() or m[8:].any() or m[0].any():
                raise ConfigError(f"{key}.bricks", "must be a 10 x 10 map of 0/1 with bricks only in rows 1-7")
            object.__setattr__(self, "bricks", tuple(tuple(int(v) for v in r) for r in m))

    @classmethod
    def parse(cls, value: "BrickLayout | str | dict[str, Any] | None") -> "BrickLayout":
        """From a config value: a family name or a dict of the fields."""
        if isinstance(value, BrickLayout):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(family=value, rows=(1, 5) if value == "thick" else (1, 6) if value == "random" else (1, 3),
                       density=0.45 if value == "random" else 0.4)
        try:
            return cls(**{k: tuple(v) if k == "rows" else v for k, v in dict(value).items()})
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError("data.init_args.shift.bricks", f"a family name ({', '.join(LAYOUT_FAMILIES)}) or a dict "
                              f"of family, rows, density, bricks; got {value!r}") from None

    def bricks_for(self, seed: int) -> np.ndarray:
        """The (10, 10) float brick map of the episode with ``seed``."""
        m = np.zeros((10, 10))
        rng = np.random.default_rng([seed, 7])
        lo, hi = self.rows
        if self.family == "standard":
            m[1:4] = 1
        elif self.family == "holes":
            m[1:4] = 1
            cells = np.argwhere(m == 1)
            gone = rng.choice(len(cells), size=int(round(self.density * len(cells))), replace=False)
            m[tuple(cells[gone].T)] = 0
        elif self.family == "thick":
            m[lo:hi + 1] = 1
        elif self.family == "random":
            m[lo:hi + 1] = rng.random((hi - lo + 1, 10)) < self.density
        else:
            m[:] = np.asarray(self.bricks, dtype=float)
        return m

    def apply(self, env: Environment, seed: int) -> None:
        """Set this layout in ``env``'s game (just after a reset)."""
        if self.family != "standard":
            env.env.brick_map = self.bricks_for(seed)

