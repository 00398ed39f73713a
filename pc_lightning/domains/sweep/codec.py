"""Tokens for the sweep domain: a top-down grid for the state, the two effectors' floods
for the procedure, a block of velocity bins for the action.

State block (size x size, one token per cell of the table): what lies at the cell, the
top one of effector > particle > particle in a bowl > bowl > table. A particle or an
effector's token also says which quarter of the cell holds its centre, so the grid shows
positions at half a cell, the expert's *levels* (``expert.py``):

    TABLE 0, BOWL 1, IN_BOWL 2, PARTICLE 3 + q, EFFECTOR_k 7 + 4k + q, FULL_EFFECTOR_k 15 + 4k + q,
    BOTH 23 + 4 * (2 * full_0 + full_1) + q

with q = 2 * (lower half) + (right half) and k the effector (a full effector carries a
particle, which lies under it and is not drawn; BOTH: the two spatulas in one cell, q
effector 0's quarter). 39 ids.

Step blocks have the state's shape: x_l is round l of the two floods (``expert.py``),
flood 0 from the particles, flood 1 from the bowls. A cell's token is ``10 * m_0 + m_1``,
m_f for flood f: UNREACHED 0, AT_GOAL 1 (a source; x_0 holds the sources alone), or
2 + i for a cell reached by round l whose move towards the sources is ``MOVES[i]``.
100 ids. Generation stops at the first block where every effector is reached at its cell
by its flood (flood 0 for an empty spatula, flood 1 for a full one; a flood without a
source reaches no one and waits for no one).

Action block: 4 tokens, effector 0 (vx, vy), effector 1 (vx, vy), each one of ``n_bins``
uniform bins over [-max_speed, max_speed] (``expert.velocity_bins``): the bins of
``SPEED`` x the move at the effector's cell in the last block. The expert executes the
bin centres, so decoding a predicted block gives exactly the expert's command where the
bins are right; the binning error against the unbinned command is at most half a bin.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.sweep.env import N_EFFECTORS, SweepConfig
from pc_lightning.domains.sweep.expert import AT_GOAL, MOVES, UNREACHED, Plan, to_level

TABLE, BOWL, IN_BOWL, PARTICLE = 0, 1, 2, 3
EFFECTOR, FULL_EFFECTOR, BOTH = 7, 15, 23
STATE_VOCAB = 39


def effector_masks(state, k: int) -> tuple:
    """Where the state shows effector k (..., S, S), empty and full: its own tokens, and
    the BOTH tokens with its fullness bit. numpy or torch."""
    empty = (state >= EFFECTOR + 4 * k) & (state < EFFECTOR + 4 * k + 4)
    full = (state >= FULL_EFFECTOR + 4 * k) & (state < FULL_EFFECTOR + 4 * k + 4)
    both = (state >= BOTH) & (state < BOTH + 16)
    bit = ((state - BOTH) // 4 >> (1 - k)) & 1  # full_k of a BOTH token
    return empty | (both & (bit == 0)), full | (both & (bit == 1))
MOVE_TOKENS = 2 + len(MOVES)  # per effector: UNREACHED, AT_GOAL, the eight moves
STEP_VOCAB = MOVE_TOKENS**N_EFFECTORS


def split_tokens(block: np.ndarray) -> np.ndarray:
    """Step tokens (...,) -> each effector's flood token (..., 2)."""
    block = np.asarray(block)
    return np.stack([block // MOVE_TOKENS, block % MOVE_TOKENS], -1)


def join_tokens(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    return MOVE_TOKENS * np.asarray(m0) + np.asarray(m1)


class Codec:
    """Token layout for tables of ``cfg.size`` cells (``max_particles``: the most any suite has)."""

    def __init__(self, cfg: SweepConfig, max_particles: int = 12) -> None:
        self.cfg = cfg
        self.max_particles = max_particles
        self.step_vocab = STEP_VOCAB
        self.state_vocab = STATE_VOCAB
        self.max_blocks = 2 * cfg.size  # a flood's rounds on the table, and then some

    # ---------------------------------------------------------------- state
    @staticmethod
    def _cell_and_quarter(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        level = to_level(pos)  # (n, 2) (x, y)
        cell = level // 2
        quarter = 2 * (level[:, 1] % 2) + level[:, 0] % 2
        return cell, quarter

    def encode_state(self, env) -> np.ndarray:
        """The table as tokens (size, size) (rows y, columns x)."""
        s = self.cfg.size
        grid = np.full((s, s), TABLE, dtype=np.int64)
        centres = np.arange(s) + 0.5
        yy, xx = np.meshgrid(centres, centres, indexing="ij")
        for b in env.bowls:
            grid[(xx - b[0]) ** 2 + (yy - b[1]) ** 2 <= self.cfg.bowl_radius ** 2] = BOWL
        pos = env.particle_positions()
        carried = set(int(i) for i in env.carrying if i >= 0)
        for layer, token in ((env.captured, None), (~env.captured, PARTICLE)):
            idx = [i for i in np.flatnonzero(layer) if i not in carried]
            if not idx:
                continue
            cell, q = self._cell_and_quarter(pos[idx])
            cell = np.clip(cell, 0, s - 1)
            grid[cell[:, 1], cell[:, 0]] = IN_BOWL if token is None else token + q
        cell, q = self._cell_and_quarter(env.effector_positions())
        cell = np.clip(cell, 0, s - 1)
        full = env.carrying >= 0
        if (cell[0] == cell[1]).all():
            grid[cell[0, 1], cell[0, 0]] = BOTH + 4 * (2 * int(full[0]) + int(full[1])) + q[0]
            return grid
        for k in range(N_EFFECTORS):
            grid[cell[k, 1], cell[k, 0]] = (FULL_EFFECTOR if full[k] else EFFECTOR) + 4 * k + q[k]
        return grid

    # ---------------------------------------------------------------- procedure
    def effector_cells(self, state: np.ndarray) -> list[tuple[tuple[int, int], int]]:
        """Each effector's cell (row, column) and flood (0 empty, 1 full), as the state shows it."""
        out = []
        for k in range(N_EFFECTORS):
            empty, full = effector_masks(state, k)
            hit = np.argwhere(empty | full)
            cell = tuple(int(v) for v in hit[0]) if len(hit) else (0, 0)
            out.append((cell, int(full[cell])))
        return out

    def encode_procedure(self, plan: Plan) -> np.ndarray:
        """The expert's plan -> step blocks (L+1, S, S): x_0 the sources, x_l the floods' round
        l, up to the first block that meets :meth:`stop_fn`."""
        blocks = []
        for l in range(plan.rounds + 1):
            m = [np.where((plan.dist[f] >= 0) & (plan.dist[f] <= l), plan.moves[f], UNREACHED) for f in range(2)]
            blocks.append(join_tokens(*m))
        return np.stack(blocks).astype(np.int64)

    def action_of(self, state: np.ndarray, block: np.ndarray, n_bins: int) -> np.ndarray:
        """The action (4 bin ids) a procedure's last block gives at the effectors' cells, as the expert acts."""
        from pc_lightning.domains.sweep.expert import move_velocities, velocity_bins

        m = split_tokens(block)
        v = move_velocities([m[r, c, f] for (r, c), f in self.effector_cells(state)])
        return velocity_bins(self.cfg, n_bins).encode(v.reshape(-1))

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """Generation's stop rule (see the module docstring): (B, S, S), (B, S, S) -> (B,)."""
        floods = [step // MOVE_TOKENS, step % MOVE_TOKENS]
        sourced = [(m == AT_GOAL).flatten(1).any(1) for m in floods]  # (B,) per flood
        done = torch.ones(len(state), dtype=torch.bool, device=state.device)
        for k in range(N_EFFECTORS):
            for f, here in enumerate(effector_masks(state, k)):
                reached = (here & (floods[f] != UNREACHED)).flatten(1).any(1)
                done &= ~(here.flatten(1).any(1) & sourced[f]) | reached
        return done

    # ---------------------------------------------------------------- render
    def scene_rgb(self, state: np.ndarray, scale: int = 16) -> np.ndarray:
        """State tokens (S, S) -> RGB (S*scale, S*scale, 3) uint8."""
        palette = np.zeros((STATE_VOCAB, 3), dtype=np.uint8)
        palette[TABLE] = (238, 232, 215)
        palette[BOWL] = (190, 200, 250)
        palette[IN_BOWL] = (40, 160, 60)
        palette[PARTICLE : PARTICLE + 4] = (215, 40, 30)
        palette[EFFECTOR : EFFECTOR + 4] = (30, 60, 200)
        palette[EFFECTOR + 4 : EFFECTOR + 8] = (220, 130, 0)
        palette[FULL_EFFECTOR : FULL_EFFECTOR + 4] = (90, 110, 255)
        palette[FULL_EFFECTOR + 4 : FULL_EFFECTOR + 8] = (255, 180, 60)
        palette[BOTH:] = (150, 60, 170)
        img = palette[np.clip(np.asarray(state), 0, STATE_VOCAB - 1)]
        return img.repeat(scale, 0).repeat(scale, 1)

    FLOOD_RGB = ((200, 30, 30), (40, 90, 220))  # flood 0 (from the particles), flood 1 (from the bowls)

    def block_rgb(self, state: np.ndarray, block: np.ndarray, scale: int = 16, wrong: np.ndarray | None = None
                  ) -> np.ndarray:
        """The scene with one step block over it: each flood's reached cells tinted in its
        colour, its sources ringed, its moves as short strokes; ``wrong`` (S, S) bool cells get a black dot."""
        from PIL import Image, ImageDraw

        base = self.scene_rgb(state, scale).astype(np.float64)
        m = split_tokens(block)  # (S, S, 2)
        for k in range(N_EFFECTORS):
            reached = (m[..., k] != UNREACHED).repeat(scale, 0).repeat(scale, 1)
            base[reached] = 0.7 * base[reached] + 0.3 * np.array(self.FLOOD_RGB[k])
        im = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(im)
        for k in range(N_EFFECTORS):
            for r, c in np.argwhere(m[..., k] != UNREACHED):
                cx, cy = (c + 0.5) * scale, (r + 0.5) * scale
                t = int(m[r, c, k])
                if t == AT_GOAL:
                    draw.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], outline=self.FLOOD_RGB[k], width=2)
                elif t >= 2:
                    dx, dy = MOVES[t - 2]
                    draw.line([cx, cy, cx + dx * scale * 0.4, cy + dy * scale * 0.4], fill=self.FLOOD_RGB[k], width=1)
        if wrong is not None:
            for r, c in np.argwhere(wrong):
                cx, cy = (c + 0.5) * scale, (r + 0.5) * scale
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(0, 0, 0))
        return np.asarray(im)

    def render_procedures(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H, W): the expert's floods (top row) and the model's (bottom) at x_0, the
        middle round and the last, over the scene, with a key; black dots: the model's wrong cells."""
        from pc_lightning.eval.pictures import labelled_grid

        n = max(len(expert), len(generated), 1)
        picks = sorted({0, (n - 1) // 2, n - 1})
        rows = []
        for label, blocks in (("expert", expert), ("model", generated)):
            tiles = []
            for l in picks:
                if l < len(blocks):
                    wrong = None if label == "expert" or l >= len(expert) else np.asarray(blocks[l]) != expert[l]
                    tiles.append(self.block_rgb(state, blocks[l], wrong=wrong))
                else:
                    tiles.append(np.full_like(self.scene_rgb(state), 255))
            rows.append((label, tiles))
        key = [("flood from particles", self.FLOOD_RGB[0]), ("flood from bowls", self.FLOOD_RGB[1]),
               ("spatula 0", (30, 60, 200)), ("spatula 1", (220, 130, 0)), ("in bowl", (40, 160, 60)),
               ("wrong", (0, 0, 0))]
        img = labelled_grid(rows, [f"x{l}" for l in picks], key)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- augmentation
def _quarter_tokens(flip_x: bool, flip_y: bool, swap: bool) -> np.ndarray:
    """The state token map of one symmetry: particle and effector tokens move their quarter."""
    out = np.arange(STATE_VOCAB)
    for base in (PARTICLE, EFFECTOR, EFFECTOR + 4, FULL_EFFECTOR, FULL_EFFECTOR + 4, *range(BOTH, BOTH + 16, 4)):
        for q in range(4):
            qx, qy = q % 2, q // 2
            if swap:
                qx, qy = qy, qx
            qx, qy = qx ^ int(flip_x), qy ^ int(flip_y)
            out[base + q] = base + 2 * qy + qx
    return out


def _move_tokens(flip_x: bool, flip_y: bool, swap: bool) -> np.ndarray:
    """A flood token map (MOVE_TOKENS,) of one symmetry: each move (dx, dy) transformed."""
    out = np.arange(MOVE_TOKENS)
    for i, (dx, dy) in enumerate(MOVES):
        if swap:
            dx, dy = dy, dx
        out[2 + i] = 2 + MOVES.index((-dx if flip_x else dx, -dy if flip_y else dy))
    return out


class DihedralAugment:
    """A random one of the table's 8 symmetries (transpose, then mirror x and/or y) applied
    to a state, its procedure and its action block: grid cells, quarters and flood moves
    move together, velocity bins are mirrored (the bins are symmetric about 0: bin i of -v
    is n_bins - 1 - i) and swapped. The floods on the transformed table are the expert's
    up to its tie-breaks (the order of ``MOVES``), and the action is still the move at each
    effector's cell in the last block."""

    def __init__(self, codec: Codec, n_bins: int) -> None:
        self.codec, self.n_bins = codec, n_bins

    @staticmethod
    def _grid(g: np.ndarray, flip_x: bool, flip_y: bool, swap: bool) -> np.ndarray:
        if swap:
            g = np.swapaxes(g, -1, -2)
        if flip_x:
            g = g[..., ::-1]
        if flip_y:
            g = g[..., ::-1, :]
        return g

    def __call__(self, state: np.ndarray, steps: np.ndarray, action: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = int(rng.integers(8))
        swap, flip_x, flip_y = bool(t & 4), bool(t & 1), bool(t & 2)
        s = _quarter_tokens(flip_x, flip_y, swap)[self._grid(np.asarray(state), flip_x, flip_y, swap)]
        x = self._grid(np.asarray(steps, dtype=np.int64), flip_x, flip_y, swap)  # (L, S, S)
        moves = _move_tokens(flip_x, flip_y, swap)
        m = split_tokens(x)
        x = join_tokens(moves[m[..., 0]], moves[m[..., 1]])
        v = np.asarray(action).reshape(-1, 2).copy()  # (effectors, (vx, vy)) bin ids
        if swap:
            v = v[:, ::-1].copy()
        if flip_x:
            v[:, 0] = self.n_bins - 1 - v[:, 0]
        if flip_y:
            v[:, 1] = self.n_bins - 1 - v[:, 1]
        return np.ascontiguousarray(s), np.ascontiguousarray(x), v.reshape(-1)
