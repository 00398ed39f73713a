"""Tokens for MinAtar states, MCTS procedures and actions.

A frame is 10 x 10 tokens, each cell one token whose bits are the game's C channels
(token = sum_c 2**c * frame[y, x, c], so 0 .. 2**C - 1).

State block s (10 x 10): the observed frame, nothing else.

Step blocks (11 x 10, ``TokenSpec.step_shape``): rows 0-9 a frame, row 10 what is not a
frame. Since the shapes differ, a start block predicts x_0 (the core's
``TokenSpec.start_token``); a step cell sees the state cell at its coordinates, and the
cells of row 10 see none.

Procedure x_0 .. x_D, the search's principal variation (PV: from the root, the most-visited
child, D <= ``pv_depth`` actions a_0 .. a_{D-1}, the frames f_1 .. f_D they reach in the
search's simulator, and the values Q_0 .. Q_{D-1} of those nodes). Each block holds a frame
and the action taken *from* it, so a frame is always predicted after the action that
produced it (from the block before, which holds that action):

    rows 0-9   f_l: the state's frame for l = 0, else the frame the search reached after a_{l-1}
    row 10     [ACTION + a_l, VALUE + bin(Q_l), ACTION + a, MORE, DEPTH + l, PAD, ..., PAD]   (l < D)
    row 10     [PAD,          PAD,              ACTION + a, LAST, DEPTH + D, PAD, ..., PAD]   (l = D)

a_0 is the root's chosen action, which is the action a; every block repeats a (column 2)
so that with a Markov window (each block sees only the one before) the last still shows
the answer to the action query hosted there. Q_l is the mean discounted return of the
node a_l leads to, binned by :data:`VALUE_EDGES` (bin i holds values in [edge[i-1], edge[i])).
Column 3 is LAST on the final block, MORE before it; generation stops at LAST. Column 4 is
the block's depth l (capped at :data:`MAX_DEPTH` - 1). With a Markov window a block sees
only the previous one, so without it the depth, and with it where the PV ends, is invisible:
a model then ended its PVs after 2 blocks where the expert's had 4, and the action query,
trained on final blocks only, read a block unlike any it was trained on.

Before this layout a block held a_l beside the frame *after* it, f_{l+1}: all cells of a
block are predicted at once, so the frame was predicted without knowing the action, and
the model drew the paddle on both sides (breakout: 3.45 wrong cells per imagined frame,
none exact; 2.95 with this layout, still none exact: docs/notes/2026-11-25-minatar-uct-expert.md).

Until 2026-12-01 the state block was 11 x 10 too, its row 10 all PAD (every block had to
be the state's shape); the step blocks are unchanged.

Token ids of the step vocabulary: frame tokens 0 .. 2**C - 1, PAD = 2**C, ACTION = PAD + 1
(6 ids, MinAtar's full action set), VALUE = ACTION + 6 (len(VALUE_EDGES) + 1 ids), then
MORE, LAST, and DEPTH (MAX_DEPTH ids).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.minatar.env import N_ACTIONS, N_CHANNELS, tokens_to_frame
from pc_lightning.domains.minatar.expert import PVStep

VALUE_EDGES = np.array([-0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
H, W = 11, 10  # step block grid: a 10 x 10 frame and one row of extra tokens (the state block is 10 x 10)
MAX_DEPTH = 8  # depth tokens 0 .. 7; deeper PV steps share the last


class Codec:
    """Token layout for one game (its channel count sets the frame vocabulary)."""

    def __init__(self, game: str) -> None:
        self.game = game
        self.n_channels = N_CHANNELS[game]
        self.pad = 2**self.n_channels
        self.action_base = self.pad + 1
        self.value_base = self.action_base + N_ACTIONS
        self.more = self.value_base + len(VALUE_EDGES) + 1
        self.last = self.more + 1
        self.depth_base = self.last + 1
        self.state_vocab = self.pad  # frame tokens only
        self.step_vocab = self.depth_base + MAX_DEPTH
        self._palette = self._make_palette()

    def cell_weights(self, action: float = 50.0, other: float = 5.0, frame: float = 1.0) -> list[list[float]]:
        """Loss weights of a step block's cells: the action tokens (a_l and a) weigh ``action``,
        the rest of row 10 (value, MORE/LAST, depth, PAD) ``other``, each frame cell ``frame``
        (0: the imagined frames are not cloned, an ablation; ``data.init_args.frame_weight``). Without
        them the one token that decides (a_0, predicted with x_0 from the state) would be
        1/110 of a block's loss, and the model learns the frames but not the decision.

        The always-PAD cells weigh ``other`` too, not 0: a generated block is the next
        block's input, and the action query reads the last one whole. With weight 0 the
        model never learnt to write PAD there, wrote frame tokens instead, and the query,
        which had only seen PAD there, misread the action (docs/notes/2026-11-25-minatar-uct-expert.md, item 7)."""
        w = np.full((H, W), float(frame))
        w[10] = other
        w[10, [0, 2]] = action
        return w.tolist()

    #: Index of the first block whose frame the search imagined (f_1, after a_0).
    first_imagined = 1

    def procedure_blocks(self, pv_depth: int) -> int:
        """The most blocks a procedure of a search with ``pv_depth`` has (generation's limit)."""
        return pv_depth + 1

    # ---------------------------------------------------------------- encode
    def encode_state(self, frame: np.ndarray) -> np.ndarray:
        """Frame tokens (..., 10, 10) -> state block (..., 10, 10): the frame itself."""
        return np.asarray(frame, dtype=np.int64)

    def encode_procedure(self, pv: list[PVStep], state_frame: np.ndarray) -> np.ndarray:
        """Principal variation -> step blocks (len(pv) + 1, 11, 10); ``state_frame`` (10, 10)
        tokens, the searched state's frame, is x_0's. An empty PV (a search that expanded
        nothing) becomes one step: action 0 ('n') to the state's frame, value 0."""
        state_frame = np.asarray(state_frame)
        if not pv:
            pv = [PVStep(0, state_frame, 0.0, 0)]
        out = np.full((len(pv) + 1, H, W), self.pad, dtype=np.int64)
        out[0, :10] = state_frame
        for i, step in enumerate(pv):
            out[i, 10, 0] = self.action_base + step.action
            out[i, 10, 1] = self.value_base + int(np.searchsorted(VALUE_EDGES, step.value, side="right"))
            out[i + 1, :10] = step.frame
        out[:, 10, 2] = self.action_base + pv[0].action
        out[:, 10, 3] = self.more
        out[:, 10, 4] = self.depth_base + np.minimum(np.arange(len(pv) + 1), MAX_DEPTH - 1)
        out[-1, 10, 3] = self.last
        return out

    # ---------------------------------------------------------------- decode
    def decode_step(self, block: np.ndarray) -> tuple[int | None, np.ndarray, int | None, int, bool] | None:
        """(action a_l, frame f_l (10, 10, C) bool, value bin, the root's action a, last) of a
        step block, a_l and the bin None on the last block; None if it is malformed (a
        generated one may be)."""
        block = np.asarray(block)
        last = int(block[10, 3]) == self.last
        a, v, root = (int(block[10, i]) - b for i, b in
                      ((0, self.action_base), (1, self.value_base), (2, self.action_base)))
        frame = block[:10]
        ok = (0 <= root < N_ACTIONS) and bool((frame < self.pad).all()) and int(block[10, 3]) in (self.more, self.last)
        if last:
            ok = ok and int(block[10, 0]) == self.pad and int(block[10, 1]) == self.pad
            a = v = None
        else:
            ok = ok and (0 <= a < N_ACTIONS) and (0 <= v <= len(VALUE_EDGES))
        if not ok:
            return None
        return a, tokens_to_frame(frame, self.n_channels), v, root, last

    def decode_state(self, block: np.ndarray) -> np.ndarray:
        """State block (10, 10) -> frame (10, 10, C) bool."""
        return tokens_to_frame(np.asarray(block)[:10], self.n_channels)

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """Generation's stop rule: the step is marked LAST. state (B, 10, 10), step (B, 11, 10) -> (B,) bool."""
        return step[:, 10, 3] == self.last

    # ---------------------------------------------------------------- render
    def palette(self) -> np.ndarray:
        """(C + 1, 3) uint8: black background, then one colour per channel."""
        return self._palette

    def _make_palette(self) -> np.ndarray:
        rng = np.random.default_rng(3)
        base = np.array([[230, 80, 60], [70, 160, 230], [250, 210, 60], [120, 220, 110], [200, 110, 220],
                         [240, 150, 60], [90, 220, 210], [180, 180, 180], [250, 120, 170], [140, 120, 250]])
        extra = rng.integers(60, 255, size=(max(0, self.n_channels - len(base)), 3))
        return np.concatenate([[[0, 0, 0]], base, extra])[: self.n_channels + 1].astype(np.uint8)

    def frame_rgb(self, frame_tokens: np.ndarray, scale: int = 8) -> np.ndarray:
        """Frame tokens (10, 10) -> RGB (10*scale, 10*scale, 3) uint8; a cell shows its highest channel.
        Tokens that are not frames (a malformed generated cell) show white."""
        tok = np.asarray(frame_tokens)
        bits = tokens_to_frame(np.minimum(tok, self.pad - 1), self.n_channels)  # (10, 10, C)
        top = np.where(bits.any(-1), self.n_channels - np.argmax(bits[..., ::-1], -1), 0)
        img = self._palette[top]
        img[tok >= self.pad] = 255
        return img.repeat(scale, 0).repeat(scale, 1)

    def colour_key(self) -> list[tuple[str, np.ndarray]]:
        """(name, colour) of each of the game's channels (a cell shows its highest channel)."""
        import minatar

        names = sorted(minatar.Environment(self.game).env.channels.items(), key=lambda kv: kv[1])
        return [(name, self._palette[c + 1]) for name, c in names] + [("not a frame", np.array([255, 255, 255]))]

    def render_procedures(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H', W'): rows "expert" and "model", each the state then the frames of
        its procedure's steps x_0, x_1, ... (titled), with the channels' colour key."""
        from pc_lightning.eval.pictures import labelled_grid

        cols = max(len(expert), len(generated))
        blank = np.zeros((80, 80, 3), dtype=np.uint8)
        rows = [(name, [self.frame_rgb(state[:10])] + [self.frame_rgb(seq[i][:10]) if i < len(seq) else blank
                                                       for i in range(cols)])
                for name, seq in (("expert", expert), ("model", generated))]
        img = labelled_grid(rows, ["state"] + [f"x{i}" for i in range(cols)], self.colour_key())
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()
