"""Tokens for the sweep domain: a top-down grid for the state, coordinate rows for the
procedure, a block of velocity bins for the action.

State block (size x size, one token per cell of the table): what lies at the cell, the
top one of effector > particle > particle in a bowl > bowl > table. A particle or an
effector's token also says which quarter of the cell holds its centre, so the grid shows
positions at half a cell, the expert's *levels* (``expert.py``):

    TABLE 0, BOWL 1, IN_BOWL 2, PARTICLE 3 + q, EFFECTOR_k 7 + 4k + q, FULL_EFFECTOR_k 15 + 4k + q

with q = 2 * (lower half) + (right half) and k the effector (a full effector carries a
particle, which lies under it and is not drawn).

Step blocks (``max_particles`` + 2 rows, 5 columns; rows 0 .. P-1 the particles not yet in
a bowl in raster order, then unused rows, then the two effectors; column 4 the stage):

    x_0 locate   particle [x, y, FREE | CARRIED_k, PAD, STAGE_0]   effector [x, y, PAD, PAD, STAGE_0]
    x_1 assign   particle [bowl x, bowl y, OWNER_k | PAD, PAD, STAGE_1]
                 effector [goal x, goal y, PAD, PAD, STAGE_1]   (its particle's bowl if it carries
                                                                 it, else the particle; PAD: no target)
    x_2 plan     particle [PAD, PAD, PAD, PAD, STAGE_2]
                 effector [waypoint x, waypoint y, STEP dx, STEP dy, STAGE_2]

Coordinates are levels 0 .. 2*size - 1 (position = (level + 0.5) / 2 cells), the token
ids 0 .. 2*size - 1. A step is waypoint - effector in levels per axis, -R .. R with R =
``expert.ROUTE_STEPS``, token STEP + R + d: the action is a function of the two step tokens
alone (``expert.py``, *act*). Unused rows are PAD but for their stage. Generation stops at
STAGE_2.

Action block: 4 tokens, effector 0 (vx, vy), effector 1 (vx, vy), each one of ``n_bins``
uniform bins over [-max_speed, max_speed] (``expert.velocity_bins``). The expert executes
the bin centres, so decoding a predicted block gives exactly the expert's command where
the bins are right; the binning error against the unbinned command is half a bin.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.sweep.env import N_EFFECTORS, SweepConfig
from pc_lightning.domains.sweep.expert import ROUTE_STEPS, Plan, from_level, to_level

TABLE, BOWL, IN_BOWL, PARTICLE = 0, 1, 2, 3
EFFECTOR, FULL_EFFECTOR = 7, 15
STATE_VOCAB = 23
N_COLUMNS = 5
STAGES = 3  # locate, assign, plan


class Codec:
    """Token layout for tables of ``cfg.size`` cells and at most ``max_particles`` particles."""

    def __init__(self, cfg: SweepConfig, max_particles: int = 12) -> None:
        self.cfg = cfg
        self.max_particles = max_particles
        self.levels = 2 * cfg.size
        self.pad = self.levels
        self.free = self.pad + 1
        self.carried = self.free + 1  # + k
        self.owner = self.carried + N_EFFECTORS  # + k
        self.step = self.owner + N_EFFECTORS  # + ROUTE_STEPS + d, d in -R .. R
        self.stage = self.step + 2 * ROUTE_STEPS + 1  # + l
        self.step_vocab = self.stage + STAGES
        self.state_vocab = STATE_VOCAB
        self.step_shape = (max_particles + N_EFFECTORS, N_COLUMNS)

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
        for k in reversed(range(N_EFFECTORS)):  # effector 0 on top where they overlap
            base = FULL_EFFECTOR if env.carrying[k] >= 0 else EFFECTOR
            grid[cell[k, 1], cell[k, 0]] = base + 4 * k + q[k]
        return grid

    # ---------------------------------------------------------------- procedure
    def encode_procedure(self, plan: Plan) -> np.ndarray:
        """The expert's plan -> step blocks (3, max_particles + 2, 5)."""
        n = len(plan.particles)
        if n > self.max_particles:
            raise ValueError(f"{n} particles do not fit the step blocks of {self.max_particles} "
                             "(raise data.init_args.max_particles)")
        out = np.full((STAGES, *self.step_shape), self.pad, dtype=np.int64)
        for l in range(STAGES):
            out[l, :, 4] = self.stage + l
        eff = slice(self.max_particles, self.max_particles + N_EFFECTORS)
        # x_0: locate
        out[0, :n, :2] = plan.particles
        out[0, :n, 2] = np.where(plan.carried_by >= 0, self.carried + plan.carried_by, self.free)
        out[0, eff, :2] = plan.effectors
        # x_1: assign
        out[1, :n, :2] = plan.bowl_of
        out[1, :n, 2] = np.where(plan.owner >= 0, self.owner + plan.owner, self.pad)
        for k in range(N_EFFECTORS):
            t = plan.target[k]
            if t >= 0:
                carrying = plan.carried_by[t] == k
                out[1, self.max_particles + k, :2] = plan.bowl_of[t] if carrying else plan.particles[t]
        # x_2: plan
        out[2, eff, :2] = plan.waypoints
        out[2, eff, 2:4] = self.step + ROUTE_STEPS + (plan.waypoints - plan.effectors)
        return out

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """Generation's stop rule: the block is the plan (stage 2). (B, S, S), (B, P + 2, 5) -> (B,)."""
        return step[:, 0, 4] == self.stage + STAGES - 1

    def coordinates(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The coordinate cells of a block (rows, 2 columns) as levels, and a mask of those
        that hold a coordinate (not PAD)."""
        xy = np.asarray(block)[..., :2]
        return xy, xy < self.levels

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
        img = palette[np.clip(np.asarray(state), 0, STATE_VOCAB - 1)]
        return img.repeat(scale, 0).repeat(scale, 1)

    def level_to_pixel(self, level: np.ndarray, scale: int = 16) -> np.ndarray:
        return from_level(level) * scale

    def render_procedures(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H, W): the scene with each stage's coordinates drawn over it, one panel
        per stage (locate, assign, plan): the expert's as rings, the model's as crosses."""
        from PIL import Image, ImageDraw

        scale = 16
        base = self.scene_rgb(state, scale)
        panels = []
        for l in range(STAGES):
            im = Image.fromarray(base.copy())
            draw = ImageDraw.Draw(im)
            for blocks, colour, mark in ((expert, (0, 0, 0), "ring"), (generated, (200, 0, 200), "cross")):
                if l >= len(blocks) or (np.asarray(blocks[l]) < 0).any():
                    continue
                xy, ok = self.coordinates(blocks[l])
                for (x, y) in xy[ok.all(-1)]:
                    px, py = self.level_to_pixel(np.array([x, y]), scale)
                    if mark == "ring":
                        draw.ellipse([px - 5, py - 5, px + 5, py + 5], outline=colour, width=2)
                    else:
                        draw.line([px - 4, py - 4, px + 4, py + 4], fill=colour, width=2)
                        draw.line([px - 4, py + 4, px + 4, py - 4], fill=colour, width=2)
            draw.text((3, 2), ["x0 locate", "x1 assign", "x2 plan"][l] + "  o expert  x model", fill=(0, 0, 0))
            panels.append(np.asarray(im))
            panels.append(np.full((base.shape[0], 4, 3), 255, np.uint8))
        img = np.concatenate(panels[:-1], 1)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- augmentation
def _quarter_tokens(flip_x: bool, flip_y: bool, swap: bool) -> np.ndarray:
    """The state token map of one symmetry: particle and effector tokens move their quarter."""
    out = np.arange(STATE_VOCAB)
    for base in (PARTICLE, EFFECTOR, EFFECTOR + 4, FULL_EFFECTOR, FULL_EFFECTOR + 4):
        for q in range(4):
            qx, qy = q % 2, q // 2
            if swap:
                qx, qy = qy, qx
            qx, qy = qx ^ int(flip_x), qy ^ int(flip_y)
            out[base + q] = base + 2 * qy + qx
    return out


class DihedralAugment:
    """A random one of the table's 8 symmetries (transpose, then mirror x and/or y) applied
    to a state, its procedure and its action block: grid cells and quarters, coordinate
    levels, particle rows re-sorted into raster order (their x_1 rows with them), velocity
    bins mirrored (the bins are symmetric about 0: bin i of -v is n_bins - 1 - i) and swapped. The expert's
    plan on the transformed table is the same up to its tie-breaks (its routes' neighbour
    order)."""

    def __init__(self, codec: Codec, n_bins: int) -> None:
        self.codec, self.n_bins = codec, n_bins

    def __call__(self, state: np.ndarray, steps: np.ndarray, action: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = int(rng.integers(8))
        swap, flip_x, flip_y = bool(t & 4), bool(t & 1), bool(t & 2)
        c = self.codec
        s = np.asarray(state)
        if swap:
            s = s.T
        if flip_x:
            s = s[:, ::-1]
        if flip_y:
            s = s[::-1]
        s = _quarter_tokens(flip_x, flip_y, swap)[s]
        x = np.array(steps, dtype=np.int64, copy=True)  # (L, P + 2, 5)
        # coordinate column pairs (x, y): levels mirror about the table (id top - v), steps about 0
        for (a, b), lo, top in (((0, 1), 0, c.levels - 1), ((2, 3), c.step, c.step + 2 * ROUTE_STEPS)):
            xy = x[:, :, [a, b]]
            has = (xy >= lo) & (xy <= top)
            if swap:
                xy = xy[..., ::-1]
                has = has[..., ::-1]
            xy = xy.copy()
            if flip_x:
                xy[..., 0] = np.where(has[..., 0], lo + top - xy[..., 0], xy[..., 0])
            if flip_y:
                xy[..., 1] = np.where(has[..., 1], lo + top - xy[..., 1], xy[..., 1])
            x[:, :, [a, b]] = xy
        n = int((x[0, : c.max_particles, 0] < c.levels).sum())  # particles in use, rows 0 .. n-1
        order = np.lexsort((x[0, :n, 0], x[0, :n, 1]))
        x[:, :n] = x[:, :n][:, order]
        v = np.asarray(action).reshape(-1, 2).copy()  # (effectors, (vx, vy)) bin ids
        if swap:
            v = v[:, ::-1].copy()
        if flip_x:
            v[:, 0] = self.n_bins - 1 - v[:, 0]
        if flip_y:
            v[:, 1] = self.n_bins - 1 - v[:, 1]
        return np.ascontiguousarray(s), x, v.reshape(-1)
