"""Token vocabularies of the maze domain, rendering, and symmetry augmentation.

State block (H x W): FREE, WALL, GOAL, AGENT per cell.
Step block x_l (H x W): BLOCKED for a wall, UNREACHED, AT_GOAL, or ``action_token(a)``
for a cell reached by round l whose optimal action is a (0 up, 1 down, 2 left, 3 right).
Walls are copied into every map so that a map alone determines the next BFS round: the
procedure is then Markov in x, and a rollout can reuse it from one step to the next.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.maze.env import ACTION_OFFSETS, N_ACTIONS

FREE, WALL, GOAL, AGENT = 0, 1, 2, 3
STATE_VOCAB = 4
UNREACHED, AT_GOAL = 0, 1
BLOCKED = 2 + N_ACTIONS
STEP_VOCAB = 3 + N_ACTIONS


def action_token(action: np.ndarray | int) -> np.ndarray | int:
    """Step token of a reached cell whose optimal action is ``action``."""
    return action + 2


def encode_states(walls: np.ndarray, goals: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """State tokens (E, H, W) uint8 from walls (E, H, W) and goal/agent coordinates (E, 2)."""
    tokens = np.where(walls, WALL, FREE).astype(np.uint8)
    e = np.arange(len(walls))
    tokens[e, goals[:, 0], goals[:, 1]] = GOAL
    tokens[e, agents[:, 0], agents[:, 1]] = AGENT
    return tokens


def reached_agent(state: Tensor, step: Tensor) -> Tensor:
    """The domain's stop rule: the flood has reached the agent's cell. (B, H, W) x2 -> (B,)."""
    return ((state == AGENT) & (step != UNREACHED)).flatten(1).any(1)


stop_fn = reached_agent  # the core's name (eval.suite.Codec)


def cells_match_up_to_ties(expert: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Per step l < min(len) and cell: does generated x_l equal the expert's x_l there, where
    an action may differ only for another equally short one? expert (L+1, H, W), generated
    (n, H, W) -> (n, H, W) bool.

    The expert breaks ties in the order up, down, left, right; that order is not invariant
    under rotations and reflections, so a model trained with symmetry augmentation may
    break them otherwise. A cell's distance to the goal is the round its expert map first
    reaches it, so optimality is read from the expert's maps alone."""
    n = min(len(expert), len(generated))
    exp, gen = expert[:n].astype(np.int64), generated[:n].astype(np.int64)
    reached = (expert != UNREACHED) & (expert != BLOCKED)  # (L+1, H, W)
    dist = np.where(reached.any(0), reached.argmax(0), -1)  # (H, W): round first reached, -1 never
    h, w = dist.shape
    padded = np.pad(dist, 1, constant_values=-2)
    optimal = np.zeros((N_ACTIONS, h, w), dtype=bool)  # a is a shortest move from the cell
    for a, (dr, dc) in enumerate(ACTION_OFFSETS):
        optimal[a] = (dist > 0) & (padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] == dist - 1)
    gen_action = gen - 2
    is_action = (gen_action >= 0) & (gen_action < N_ACTIONS) & (exp >= 2) & (exp < 2 + N_ACTIONS)
    tie_ok = is_action & optimal[np.clip(gen_action, 0, N_ACTIONS - 1), np.arange(h)[:, None], np.arange(w)]
    return (gen == exp) | tie_ok


def maps_match_up_to_ties(expert: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Per step l < min(len): is generated x_l the expert's x_l up to ties
    (:func:`cells_match_up_to_ties` at every cell)? -> (n,) bool."""
    match = cells_match_up_to_ties(expert, generated)
    return match.reshape(len(match), -1).all(1)


# ------------------------------------------------------------------ augmentation
def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Transform t in 0..7 of the square's symmetry group, applied to the last two axes."""
    out = np.rot90(grid, k=t % 4, axes=(-2, -1))
    return np.flip(out, axis=-1) if t >= 4 else out


def _action_permutation(t: int) -> np.ndarray:
    """Where action a points after transform t: perm[a] = a'."""
    perm = np.zeros(N_ACTIONS, dtype=np.int64)
    for a, (dr, dc) in enumerate(ACTION_OFFSETS):
        probe = np.zeros((3, 3), dtype=np.int64)
        probe[1 + dr, 1 + dc] = 1
        r, c = np.argwhere(dihedral(probe, t) == 1)[0]
        perm[a] = next(i for i, off in enumerate(ACTION_OFFSETS) if tuple(off) == (r - 1, c - 1))
    return perm


_PERMS = [_action_permutation(t) for t in range(8)]


def step_token_map(t: int) -> np.ndarray:
    """Step token ids under transform t: an action token points where its move turns to. (STEP_VOCAB,)"""
    token_map = np.arange(STEP_VOCAB, dtype=np.uint8)
    token_map[2 : 2 + N_ACTIONS] = action_token(_PERMS[t])
    return token_map


def dihedral_augment(state: np.ndarray, steps: np.ndarray, action: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """A random rotation/reflection of a square maze, with actions (and action tokens) remapped."""
    t = int(rng.integers(8))
    return (np.ascontiguousarray(dihedral(state, t)),
            np.ascontiguousarray(step_token_map(t)[dihedral(steps, t)]), int(_PERMS[t][action]))


# ------------------------------------------------------------------ rendering
_STATE_RGB = np.array([[235, 235, 235], [30, 30, 30], [40, 170, 60], [40, 90, 220]], dtype=np.uint8)
_STEP_RGB = np.array([[235, 235, 235], [40, 170, 60], [230, 120, 40], [200, 60, 160], [60, 170, 190],
                      [210, 190, 50], [30, 30, 30]], dtype=np.uint8)


def render_grid(state: np.ndarray, step: np.ndarray | None = None, scale: int = 6) -> np.ndarray:
    """RGB image (H*scale, W*scale, 3) of a state, or of a step map drawn over its walls."""
    rgb = _STATE_RGB[state]
    if step is not None:
        step = np.clip(step, 0, STEP_VOCAB - 1)
        rgb = np.where((state == WALL)[..., None], rgb, _STEP_RGB[step])
        agent = state == AGENT
        rgb[agent] = (rgb[agent] * 0.5 + np.array([40, 90, 220]) * 0.5).astype(np.uint8)
    return rgb.repeat(scale, 0).repeat(scale, 1)


_KEY = [("unreached", _STEP_RGB[UNREACHED]), ("goal", _STEP_RGB[AT_GOAL]), ("up", _STEP_RGB[2]),
        ("down", _STEP_RGB[3]), ("left", _STEP_RGB[4]), ("right", _STEP_RGB[5]), ("wall", _STEP_RGB[BLOCKED]),
        ("agent", _STATE_RGB[AGENT])]
_WRONG_RGB = np.array([255, 0, 0], dtype=np.uint8)


def render_procedures(state: np.ndarray, expert: np.ndarray, generated: np.ndarray, max_cols: int = 8,
                      scale: int = 6) -> Tensor:
    """The expert's maps (row "expert") over the model's (row "model") for one state, with
    step numbers, a colour key, and the model's wrong cells marked (a red dot: not the
    expert's token, nor an equally short action where the expert broke a tie otherwise):
    (3, H', W') uint8.

    The first column is the state; the others are steps x_l spread over the longer of the
    two procedures, all of them where they fit in ``max_cols`` (a step one procedure does not
    have is drawn blank)."""
    from pc_lightning.eval.pictures import labelled_grid

    length = max(len(expert), len(generated))
    cols = np.unique(np.linspace(0, length - 1, num=min(max_cols, length)).round().astype(int))
    match = cells_match_up_to_ties(expert, generated)  # (min len, H, W)
    blank = render_grid(np.full_like(state, FREE), scale=scale)

    def tile(maps: np.ndarray, c: int, mark: bool) -> np.ndarray:
        if c >= len(maps):
            return blank
        img = render_grid(state, maps[c], scale)
        if mark and c < len(match):
            for i, k in np.argwhere(~match[c]):  # a dot in the middle of each wrong cell
                cy, cx = i * scale + scale // 2, k * scale + scale // 2
                img[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2] = _WRONG_RGB
        return img

    rows = [(name, [render_grid(state, scale=scale)] + [tile(maps, c, name == "model") for c in cols])
            for name, maps in (("expert", expert), ("model", generated))]
    img = labelled_grid(rows, ["state"] + [f"x{c}" for c in cols], _KEY + [("wrong", _WRONG_RGB)])
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()
