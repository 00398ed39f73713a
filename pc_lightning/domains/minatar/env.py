"""MinAtar environments: construction, cheap snapshots, frame tokens.

MinAtar (GPL) is a dependency, used through its public ``Environment``; no code of it is
copied here. A snapshot copies each game object's state fields (lists one level deep,
since the games mutate inner lists; numpy arrays copied), which is ~100x cheaper than
``copy.deepcopy`` of the environment, most of whose cost is the RNG.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np
from minatar import Environment

from pc_lightning.errors import ConfigError

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
N_ACTIONS = 6  # MinAtar's full action set: n l u r d f
ACTION_NAMES = ("n", "l", "u", "r", "d", "f")
N_CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}

# Fields that never change during an episode (or are not game state) and are shared, not copied.
_SHARED = {"random", "channels", "action_map", "ramping"}


def check_game(game: str, key: str = "data.init_args.game") -> str:
    """``game``, or an error naming the config ``key`` unless it is one of :data:`GAMES`."""
    if game not in GAMES:
        raise ConfigError(key, f"unknown MinAtar game {game!r}; choose one of {', '.join(GAMES)}")
    return game


@lru_cache(maxsize=None)
def _minimal_actions(game: str) -> tuple[int, ...]:
    return tuple(int(a) for a in Environment(game).minimal_action_set())


def minatar_actions(game: str) -> list[int]:
    """The game's minimal action set as MinAtar action ids, in MinAtar's order."""
    return list(_minimal_actions(check_game(game)))


def make_env(game: str, seed: int, sticky_action_prob: float = 0.1, difficulty_ramping: bool = False,
             layout: Any = None) -> Environment:
    """A seeded MinAtar environment, reset; ``layout`` (breakout's
    :class:`~pc_lightning.domains.minatar.flight.BrickLayout`, or None) sets its bricks."""
    env = Environment(check_game(game), sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
    env.seed(seed)
    env.reset()
    if layout is not None:
        layout.apply(env, seed)
    return env


def _copy_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return [x.copy() if isinstance(x, (list, np.ndarray)) else x for x in v]
    return v


def snapshot(env: Environment, with_rng: bool = False) -> dict[str, Any]:
    """The game's state fields (and the wrapper's last action); with ``with_rng`` also the
    environment's RNG state (~30 us more), which makes the snapshot reproduce the
    original's future exactly, random spawns and sticky actions included."""
    game = env.env
    snap = {k: _copy_value(v) for k, v in game.__dict__.items() if k not in _SHARED}
    snap["__last_action"] = env.last_action
    if with_rng:
        snap["__rng"] = env.random.get_state()
    return snap


def restore(env: Environment, snap: dict[str, Any]) -> None:
    """Put ``env`` back into the state of ``snap`` (copied again, so a snapshot restores many times)."""
    game = env.env
    for k, v in snap.items():
        if k == "__last_action":
            env.last_action = v
        elif k == "__rng":
            env.random.set_state(v)
        else:
            setattr(game, k, _copy_value(v))


def frame_tokens(state: np.ndarray) -> np.ndarray:
    """MinAtar observation (10, 10, C) bool -> (10, 10) int64, each cell's channels as bits."""
    c = state.shape[-1]
    return (state.astype(np.int64) << np.arange(c)).sum(-1)


def tokens_to_frame(tokens: np.ndarray, n_channels: int) -> np.ndarray:
    """Inverse of :func:`frame_tokens`: (..., 10, 10) -> (..., 10, 10, C) bool."""
    return ((np.asarray(tokens)[..., None] >> np.arange(n_channels)) & 1).astype(bool)


def play_episode(env: Environment, decide: Callable[[], int], max_steps: int) -> float:
    """Play ``env`` from its current state, acting ``decide()`` (a MinAtar action id, read from
    the environment as it stands) until the game ends or ``max_steps`` actions; the return."""
    ret = 0.0
    for _ in range(max_steps):
        r, terminal = env.act(decide())
        ret += float(r)
        if terminal:
            break
    return ret
