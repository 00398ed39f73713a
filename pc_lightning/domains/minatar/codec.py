"""Tokens for MinAtar states, search procedures and actions.

A frame is 10 x 10 tokens, each cell one token whose bits are the game's C channels
(token = sum_c 2**c * frame[y, x, c], so 0 .. 2**C - 1).

State block s (10 x 10): the observed frame, nothing else.

Step blocks (11 x 10, ``TokenSpec.step_shape``): rows 0-9 a frame, row 10 what is not a
frame. A start block predicts x_0 (the core's ``TokenSpec.start_token``); a step cell sees the state cell at its coordinates, and the
cells of row 10 see none.

Procedure: what the guided search (:mod:`.search`) computed to choose, in the order a
reader would check it. First the search's verdict on every root action, then the decision
read from it, then the principal variation (PV) from the chosen action:

    x_0  scores    rows 0-9  the state's frame
                   row 10    [SCORE + s_0, ..., SCORE + s_{K-1}, PAD .., PAD, PAD, MORE, INDEX + 0]
    x_1  decision  rows 0-9  the state's frame
                   row 10    [PAD x 6, ACTION + a, ACTION + a, MORE, INDEX + 1]          (LAST if D = 0)
    x_{1+l}  PV    rows 0-9  f_l, the frame after a, a_1 .. a_{l-1} (f_1: a's child), l = 1 .. D
                   row 10    [PAD x 6, ACTION + a_l, ACTION + a, MORE, INDEX + 1 + l]     (l < D)
                   row 10    [PAD x 6, PAD,          ACTION + a, LAST, INDEX + 1 + D]     (l = D)

s_j is root action b_j's score bin (``RootAction.bin``: the search's ``logit + sigma(Q)``
binned relative to the best, :data:`SCORE_BINS` - 1 for the best; b_0 .. b_{K-1} the game's
minimal actions in MinAtar's order, K <= 6). The search's action a is the first root action
in the top bin, so x_1 follows from x_0 alone; column 6 holds the action taken from the
block's frame (a in x_1), so each PV frame follows from the block before; column 7 carries
a to the last block, where the action query reads it.

All the scores sit in one block, each predicted from the state alone, side by side, as BC
predicts the action: with a block per root action the model copied each block's bins from the
block before instead of reading the state (``docs/domains/minatar.md``, encoding).

Token ids of the step vocabulary: frame tokens 0 .. 2**C - 1, PAD = 2**C, ACTION = PAD + 1
(6 ids, MinAtar's full action set), SCORE = ACTION + 6 (SCORE_BINS ids), then MORE, LAST,
and INDEX (MAX_BLOCKS ids).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.minatar.env import N_ACTIONS, N_CHANNELS, minatar_actions, tokens_to_frame
from pc_lightning.domains.minatar.search import SearchResult

SCORE_BINS = 8  # the search's score bins (SearchConfig.score_bins at most)
H, W = 11, 10  # step block grid: a 10 x 10 frame and one row of extra tokens (the state block is 10 x 10)
MAX_BLOCKS = 12  # index tokens 0 .. 11: the scores, the decision and a PV of 10 at most
COL_ACTION, COL_DECISION, COL_END, COL_INDEX = 6, 7, 8, 9  # row 10's columns after the scores (0 .. K-1)


class StepView(NamedTuple):
    """A decoded step block. scores: the root actions' score bins (x_0) or None; action: the
    action taken from the block's frame (a in x_1, a_l in a PV block; None in x_0 and the last
    PV block); decision: a (None in x_0); frame (10, 10, C) bool; last: the block is marked LAST."""

    scores: list[int] | None
    action: int | None
    decision: int | None
    frame: np.ndarray
    last: bool


class Codec:
    """Token layout for one game (its channel count sets the frame vocabulary)."""

    def __init__(self, game: str) -> None:
        self.game = game
        self.n_channels = N_CHANNELS[game]
        self.pad = 2**self.n_channels
        self.action_base = self.pad + 1
        self.score_base = self.action_base + N_ACTIONS
        self.more = self.score_base + SCORE_BINS
        self.last = self.more + 1
        self.index_base = self.last + 1
        self.state_vocab = self.pad  # frame tokens only
        self.step_vocab = self.index_base + MAX_BLOCKS
        self.n_root = len(minatar_actions(game))
        self._palette = self._make_palette()

    def cell_weights(self, action: float = 50.0, other: float = 5.0, frame: float = 1.0) -> list[list[float]]:
        """Loss weights of a step block's cells: the tokens the decision rests on (the score
        bins, the action from the frame, the decision) weigh ``action``, the rest of row 10
        (MORE/LAST, index) ``other``, each frame cell ``frame`` (0: the imagined frames are not
        cloned, an ablation; ``data.init_args.frame_weight``). Without them the few tokens that
        decide would be a small share of a block's 110 cells, and the model learns the frames
        but not the decision.

        The always-PAD cells of row 10 weigh ``action`` too, not 0: a generated block is the next
        block's input and the action query's, whatever the loss cares about; with weight 0 the
        model never learnt to write PAD there and the query misread the action."""
        w = np.full((H, W), float(frame))
        w[10, :COL_END] = action
        w[10, COL_END:] = other
        return w.tolist()

    #: Index of the first block whose frame the search imagined (the first PV block).
    first_imagined = 2

    def procedure_blocks(self, pv_depth: int) -> int:
        """The most blocks a procedure of a search with ``pv_depth`` has (generation's limit)."""
        return 2 + pv_depth

    # ---------------------------------------------------------------- encode
    def encode_state(self, frame: np.ndarray) -> np.ndarray:
        """Frame tokens (..., 10, 10) -> state block (..., 10, 10): the frame itself."""
        return np.asarray(frame, dtype=np.int64)

    def encode_procedure(self, result: SearchResult, state_frame: np.ndarray) -> np.ndarray:
        """A search's result -> step blocks (2 + D, 11, 10): the scores, the decision, D PV
        blocks. ``state_frame`` (10, 10) tokens is the frame of the first two."""
        roots, pv = result.root, result.pv
        if len(roots) != self.n_root:
            raise ValueError(f"{self.game}: the search reports {len(roots)} root actions, "
                             f"the codec expects {self.n_root}")
        bins = [r.bin for r in roots]
        if any(not 0 <= b < SCORE_BINS for b in bins):
            raise ValueError(f"a root action's score bin is outside 0 .. {SCORE_BINS - 1}: {bins} "
                             f"(SearchConfig.score_bins must be at most {SCORE_BINS})")
        first_top = roots[int(np.argmax(bins))].action  # argmax: the first root action in the top bin
        if first_top != result.action:
            raise ValueError(f"the first root action in the top score bin ({first_top}) "
                             f"is not the search's action ({result.action})")
        if 2 + len(pv) > MAX_BLOCKS:
            raise ValueError(f"a PV of {len(pv)} steps needs {2 + len(pv)} blocks, at most {MAX_BLOCKS} have an index")
        n = 2 + len(pv)
        out = np.full((n, H, W), self.pad, dtype=np.int64)
        out[:2, :10] = np.asarray(state_frame)
        out[0, 10, : len(bins)] = self.score_base + np.asarray(bins)
        out[1, 10, COL_ACTION] = self.action_base + result.action
        for l, step in enumerate(pv):
            out[2 + l, :10] = step.frame
            if l + 1 < len(pv):
                out[2 + l, 10, COL_ACTION] = self.action_base + pv[l + 1].action
        out[1:, 10, COL_DECISION] = self.action_base + result.action
        out[:, 10, COL_END] = self.more
        out[-1, 10, COL_END] = self.last
        out[:, 10, COL_INDEX] = self.index_base + np.arange(n)
        return out

    # ---------------------------------------------------------------- decode
    def decode_step(self, block: np.ndarray) -> StepView | None:
        """What a step block shows (:class:`StepView`); None if it is malformed (a generated one may be)."""
        block = np.asarray(block)
        row = [int(t) for t in block[10]]
        index = row[COL_INDEX] - self.index_base
        if not (bool((block[:10] < self.pad).all()) and row[COL_END] in (self.more, self.last)
                and 0 <= index < MAX_BLOCKS):
            return None

        def token(col: int, base: int, size: int) -> int | None:
            return row[col] - base if base <= row[col] < base + size else None

        def is_pad(cols: range) -> bool:
            return all(row[c] == self.pad for c in cols)

        action, decision = token(COL_ACTION, self.action_base, N_ACTIONS), token(COL_DECISION, self.action_base, N_ACTIONS)
        if index == 0:
            scores = [token(c, self.score_base, SCORE_BINS) for c in range(self.n_root)]
            if None in scores or not is_pad(range(self.n_root, COL_END)):
                return None
            return StepView(scores, None, None, tokens_to_frame(block[:10], self.n_channels), row[COL_END] == self.last)
        if decision is None or not is_pad(range(COL_ACTION)) or (action is None and row[COL_ACTION] != self.pad):
            return None
        return StepView(None, action, decision, tokens_to_frame(block[:10], self.n_channels), row[COL_END] == self.last)

    def decode_state(self, block: np.ndarray) -> np.ndarray:
        """State block (10, 10) -> frame (10, 10, C) bool."""
        return tokens_to_frame(np.asarray(block)[:10], self.n_channels)

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """Generation's stop rule: the step is marked LAST. state (B, 10, 10), step (B, 11, 10) -> (B,) bool."""
        return step[:, 10, COL_END] == self.last

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
