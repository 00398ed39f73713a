"""Tokens for MinAtar states, search procedures and actions.

A frame is 10 x 10 tokens, each cell one token whose bits are the game's C channels
(token = sum_c 2**c * frame[y, x, c], so 0 .. 2**C - 1).

State block s (10 x 10): the observed frame, nothing else.

Step blocks (11 x 10, ``TokenSpec.step_shape``): rows 0-9 a frame, row 10 what is not a
frame. Since the shapes differ, a start block predicts x_0 (the core's
``TokenSpec.start_token``); a step cell sees the state cell at its coordinates, and the
cells of row 10 see none.

Procedure: what the guided search (:mod:`.search`) computed to choose, in the order a
reader would check it. First one block per root action b_0 .. b_{K-1} (the game's minimal
action set, in its order), then the principal variation (PV) from the chosen action's child:

    root block j   rows 0-9  the frame the search reached after b_j
                   row 10    [ACTION + b_j, VALUE + bin(q_j), ACTION + best_{<j}, MORE, INDEX + j,
                              SCORE + s_j, SCORE + s(best_{<j}), PAD x 3]
    PV block l     rows 0-9  f_l, the frame after a, a_1 .. a_{l-1} (f_1: a's child)
                   row 10    [ACTION + a_l, PAD, ACTION + a, MORE, INDEX + K + l - 1, PAD x 5]   (l < D)
                   row 10    [PAD,          PAD, ACTION + a, LAST, INDEX + K + D - 1, PAD x 5]   (l = D)

q_j is b_j's completed Q rescaled to [0, 1] over the root actions, in :data:`VALUE_BINS`
equal bins. s_j is b_j's score bin (``RootAction.bin``: the search's ``logit + sigma(Q)``,
binned relative to the best, :data:`SCORE_BINS` - 1 for the best). best_{<j} is the first of
b_0 .. b_{j-1} with the highest score bin, and s(best_{<j}) its bin (PAD, PAD in block 0).
The search's action a is the first root action in the top bin, so a is best_{<K}, which the
first PV block shows (column 2) and every later block repeats. Each comparison uses only
what the block before shows: best_{<j} is b_{j-1} if s_{j-1} > s(best_{<j-1}), else
best_{<j-1}, all in block j-1. A block's cells are predicted together from the blocks
before, so a running best written beside the value it depends on (the layout until
2026-12-02, best_j beside q_j) had to be guessed from the state; shifted one block, it is
read. With ``pv_depth`` 0 a decision block (the state's frame, [PAD, PAD, ACTION + a, LAST,
INDEX + K, PAD x 5]) ends the procedure. A PV block holds the action taken *from* its frame,
never the one that produced it (with the action beside the frame it produced, all cells
predicted at once, a model drew breakout's paddle on both sides:
docs/notes/2026-11-25-minatar-uct-expert.md).

Until 2026-12-02 the procedure was the PV of a UCT search alone, with a = a_0 in every
block: the model decided at x_0 from the state, and the frames after did not inform it.

Token ids of the step vocabulary: frame tokens 0 .. 2**C - 1, PAD = 2**C, ACTION = PAD + 1
(6 ids, MinAtar's full action set), VALUE = ACTION + 6 (VALUE_BINS ids), SCORE = VALUE +
VALUE_BINS (SCORE_BINS ids), then MORE, LAST, and INDEX (MAX_BLOCKS ids).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.minatar.env import N_ACTIONS, N_CHANNELS, minatar_actions, tokens_to_frame
from pc_lightning.domains.minatar.search import SearchResult

VALUE_BINS = 8  # q in [0, 1]: bin min(floor(8 q), 7)
SCORE_BINS = 8  # the search's score bins (SearchConfig.score_bins at most)
H, W = 11, 10  # step block grid: a 10 x 10 frame and one row of extra tokens (the state block is 10 x 10)
MAX_BLOCKS = 12  # index tokens 0 .. 11 (6 root actions and a PV of 6 at most)


class StepView(NamedTuple):
    """A decoded step block. action: b_j (root) or a_l (PV), None on the last PV block;
    frame (10, 10, C) bool; value: q_j's bin (root) or None; best: best_{<j} (root; None in
    block 0) or a (PV and decision blocks); last: the block is marked LAST; score: s_j
    (root) or None; best_score: s(best_{<j}) or None."""

    action: int | None
    frame: np.ndarray
    value: int | None
    best: int | None
    last: bool
    score: int | None
    best_score: int | None


class Codec:
    """Token layout for one game (its channel count sets the frame vocabulary)."""

    def __init__(self, game: str) -> None:
        self.game = game
        self.n_channels = N_CHANNELS[game]
        self.pad = 2**self.n_channels
        self.action_base = self.pad + 1
        self.value_base = self.action_base + N_ACTIONS
        self.score_base = self.value_base + VALUE_BINS
        self.more = self.score_base + SCORE_BINS
        self.last = self.more + 1
        self.index_base = self.last + 1
        self.state_vocab = self.pad  # frame tokens only
        self.step_vocab = self.index_base + MAX_BLOCKS
        self.n_root = len(minatar_actions(game))
        self._palette = self._make_palette()

    def cell_weights(self, action: float = 50.0, other: float = 5.0, frame: float = 1.0) -> list[list[float]]:
        """Loss weights of a step block's cells: the tokens the decision is read from (b_j or a_l,
        best_{<j} or a, and the two score bins) weigh ``action``, the rest of row 10 (value,
        MORE/LAST, index, PAD) ``other``, each frame cell ``frame``
        (0: the imagined frames are not cloned, an ablation; ``data.init_args.frame_weight``). Without
        them the one token that decides (a_0, predicted with x_0 from the state) would be
        1/110 of a block's loss, and the model learns the frames but not the decision.

        The always-PAD cells weigh ``other`` too, not 0: a generated block is the next
        block's input, and the action query reads the last one whole. With weight 0 the
        model never learnt to write PAD there, wrote frame tokens instead, and the query,
        which had only seen PAD there, misread the action (docs/notes/2026-11-25-minatar-uct-expert.md, item 7)."""
        w = np.full((H, W), float(frame))
        w[10] = other
        w[10, [0, 2, 5, 6]] = action
        return w.tolist()

    #: Index of the first block whose frame the search imagined (every block's frame is).
    first_imagined = 0

    def procedure_blocks(self, pv_depth: int) -> int:
        """The most blocks a procedure of a search with ``pv_depth`` has (generation's limit)."""
        return self.n_root + max(pv_depth, 1)

    def root_block(self, action: int) -> int | None:
        """The index of the root block of MinAtar action ``action`` (None if not the game's)."""
        actions = minatar_actions(self.game)
        return actions.index(action) if action in actions else None

    # ---------------------------------------------------------------- encode
    def encode_state(self, frame: np.ndarray) -> np.ndarray:
        """Frame tokens (..., 10, 10) -> state block (..., 10, 10): the frame itself."""
        return np.asarray(frame, dtype=np.int64)

    @staticmethod
    def value_bin(q: float) -> int:
        """A rescaled Q in [0, 1] -> its bin, 0 .. VALUE_BINS - 1."""
        return min(int(np.floor(max(q, 0.0) * VALUE_BINS)), VALUE_BINS - 1)

    def encode_procedure(self, result: SearchResult, state_frame: np.ndarray) -> np.ndarray:
        """A search's result -> step blocks (K + max(D, 1), 11, 10): K root blocks, D PV blocks
        (a decision block if D = 0). ``state_frame`` (10, 10) tokens stands in for a root
        action the search never tried, and is the decision block's frame."""
        state_frame = np.asarray(state_frame)
        roots, pv = result.root, result.pv
        if len(roots) != self.n_root:
            raise ValueError(f"{self.game}: the search reports {len(roots)} root actions, "
                             f"the codec expects {self.n_root}")
        if any(not 0 <= r.bin < SCORE_BINS for r in roots):
            raise ValueError(f"a root action's score bin is outside 0 .. {SCORE_BINS - 1}: "
                             f"{[r.bin for r in roots]} (SearchConfig.score_bins must be at most {SCORE_BINS})")
        k = len(roots)
        n = k + max(len(pv), 1)
        out = np.full((n, H, W), self.pad, dtype=np.int64)
        best = None  # index of the first root action with the highest bin among those before
        for j, r in enumerate(roots):
            out[j, :10] = state_frame if r.frame is None else r.frame
            out[j, 10, 0] = self.action_base + r.action
            out[j, 10, 1] = self.value_base + self.value_bin(r.scaled)
            out[j, 10, 5] = self.score_base + r.bin
            if best is not None:
                out[j, 10, 2] = self.action_base + roots[best].action
                out[j, 10, 6] = self.score_base + roots[best].bin
            if best is None or r.bin > roots[best].bin:
                best = j
        if roots[best].action != result.action:
            raise ValueError(f"the running best of the root actions ({roots[best].action}) is not the search's "
                             f"action ({result.action})")
        for l, step in enumerate(pv):
            out[k + l, :10] = step.frame
            if l + 1 < len(pv):
                out[k + l, 10, 0] = self.action_base + pv[l + 1].action
        if not pv:
            out[k, :10] = state_frame
        out[k:, 10, 2] = self.action_base + result.action
        out[:, 10, 3] = self.more
        out[:, 10, 4] = self.index_base + np.minimum(np.arange(n), MAX_BLOCKS - 1)
        out[-1, 10, 3] = self.last
        return out

    # ---------------------------------------------------------------- decode
    def decode_step(self, block: np.ndarray) -> StepView | None:
        """What a step block shows (:class:`StepView`); None if it is malformed (a generated one may be)."""
        block = np.asarray(block)
        row = [int(t) for t in block[10]]
        last = row[3] == self.last
        index = row[4] - self.index_base
        frame = block[:10]
        if not (bool((frame < self.pad).all()) and row[3] in (self.more, self.last) and 0 <= index < MAX_BLOCKS):
            return None

        def field(col: int, base: int, size: int) -> int | None | bool:
            if row[col] == self.pad:
                return None
            v = row[col] - base
            return v if 0 <= v < size else False  # False: a token of the wrong kind

        a, v, best = field(0, self.action_base, N_ACTIONS), field(1, self.value_base, VALUE_BINS), \
            field(2, self.action_base, N_ACTIONS)
        s, best_s = field(5, self.score_base, SCORE_BINS), field(6, self.score_base, SCORE_BINS)
        if any(x is False for x in (a, v, best, s, best_s)):
            return None
        if index < self.n_root and (a is None or v is None or s is None or (index > 0 and best is None)):
            return None
        if index >= self.n_root and best is None:
            return None
        return StepView(a, tokens_to_frame(frame, self.n_channels), v, best, last, s, best_s)

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
