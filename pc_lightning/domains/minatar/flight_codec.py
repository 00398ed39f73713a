"""Tokens for breakout's flight procedure (:mod:`.flight`).

A frame is 10 x 10 tokens, each cell one token whose 7 bits are the frame's channels
(paddle, ball, trail, brick, then the ball's hidden state: moving right, moving down,
strike), so 0 .. 127.

State block s (10 x 10): the frame.

Step blocks (11 x 10): rows 0-9 a frame, row 10 what kind of block it is.

    x_{l-1}  flight    rows 0-9  f_l, the imagined frame l steps ahead          l = 1 .. k
                       row 10    [FLY x 10]
    x_k      decision  rows 0-9  empty (token 0)
                       row 10    [ACTION + field_0, ..., ACTION + field_9]

f_0 is the state and f_k the last frame before the ball lands (on row 8, moving down); a
start block predicts x_0 from the state. f_{l+1} follows from f_l by the game's rule (local:
the ball's cell and its neighbours). field_j is the move of a paddle in column j towards the
nearer of the two columns that return the ball (read from f_k's ball and direction), and the
action is field at the paddle's column. Generation stops at the decision block (row 10 holds
actions). No block copies an earlier one: every block is a step of the computation, and its
moving cells are the ones that change (``model.changed_token_weight`` weighs them); a copy of
the state as x_0 and of f_k in the decision block was learnt by neither (teacher-forced, 0.00
exact after 1,500 steps, where free-flight frames were 0.74). A flight of more than MAX_FLIGHT
frames is cut (:func:`.flight.plan`), so a procedure has at most MAX_FLIGHT + 1 blocks.

Token ids of the step vocabulary: frames 0 .. 127, FLY = 128, ACTION = 129 .. 134 (MinAtar's
six action ids; breakout uses n, l, r).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pc_lightning.domains.minatar.env import N_ACTIONS, tokens_to_frame
from pc_lightning.domains.minatar.flight import FLIGHT_CHANNELS, MAX_FLIGHT, Flight
from pc_lightning.spec import TokenSpec

H, W = 11, 10
FRAME_VOCAB = 2**FLIGHT_CHANNELS
FLY = FRAME_VOCAB
ACTION = FLY + 1
STEP_VOCAB = ACTION + N_ACTIONS
COLOURS = np.array([[0, 0, 0], [230, 80, 60], [70, 160, 230], [250, 210, 60], [120, 220, 110]], dtype=np.uint8)
CHANNEL_NAMES = ("paddle", "ball", "trail", "brick")


class FlightStep(NamedTuple):
    """A decoded step block: its frame (10, 10, 7) bool and, for the decision block, the
    field (10,) of MinAtar actions (None for a flight frame)."""

    frame: np.ndarray
    field: np.ndarray | None


class FlightCodec:
    """Encode, decode and render breakout's flight procedure."""

    game = "breakout"
    state_vocab = FRAME_VOCAB
    step_vocab = STEP_VOCAB
    #: Index of the first block whose frame the expert imagined.
    first_imagined = 0
    max_blocks = MAX_FLIGHT + 1

    def spec(self, decision_weight: float = 50.0, frame_weight: float = 1.0) -> TokenSpec:
        """The token spec: row 10 (what kind of block, and the field the action is read from)
        weighs ``decision_weight`` per cell, a frame cell ``frame_weight``; without that the
        ten cells that decide are a small share of a block's 110."""
        w = np.full((H, W), float(frame_weight))
        w[10] = decision_weight
        return TokenSpec(FRAME_VOCAB, STEP_VOCAB, N_ACTIONS, step_cell_weights=w.tolist(),
                         step_bits=FLIGHT_CHANNELS, step_shape=[H, W])

    # ---------------------------------------------------------------- encode
    @staticmethod
    def frame_tokens(frames: np.ndarray) -> np.ndarray:
        """(..., 10, 10, 7) bool -> (..., 10, 10) int64."""
        return (np.asarray(frames).astype(np.int64) << np.arange(FLIGHT_CHANNELS)).sum(-1)

    def encode_state(self, frame: np.ndarray) -> np.ndarray:
        """A frame (10, 10, 7) bool (:func:`.flight.observe`) -> state block (10, 10)."""
        return self.frame_tokens(frame)

    def encode_procedure(self, flight: Flight) -> np.ndarray:
        """The expert's flight -> step blocks (k + 1, 11, 10): f_1 .. f_k, then the decision."""
        frames = self.frame_tokens(flight.frames[1:])  # (k, 10, 10)
        out = np.full((len(frames) + 1, H, W), FLY, dtype=np.int64)
        out[:-1, :10] = frames
        out[-1, :10] = 0
        out[-1, 10] = ACTION + np.asarray(flight.field)
        return out

    # ---------------------------------------------------------------- decode
    def decode_step(self, block: np.ndarray) -> FlightStep | None:
        """What a step block shows; None if it is malformed (a generated one may be)."""
        block = np.asarray(block)
        if not (block[:10] < FRAME_VOCAB).all():
            return None
        row = block[10]
        frame = tokens_to_frame(block[:10], FLIGHT_CHANNELS)
        if (row == FLY).all():
            return FlightStep(frame, None)
        if ((row >= ACTION) & (row < STEP_VOCAB)).all():
            return FlightStep(frame, row - ACTION)
        return None

    def decode_state(self, block: np.ndarray) -> np.ndarray:
        """State block (10, 10) -> frame (10, 10, 7) bool."""
        return tokens_to_frame(np.asarray(block), FLIGHT_CHANNELS)

    @staticmethod
    def stop_fn(state: Tensor, step: Tensor) -> Tensor:
        """Generation stops at the decision block: state (B, 10, 10), step (B, 11, 10) -> (B,) bool."""
        return step[:, 10, 0] >= ACTION

    # ---------------------------------------------------------------- render
    def frame_rgb(self, tokens: np.ndarray, scale: int = 8) -> np.ndarray:
        """Frame tokens (10, 10) -> RGB (10*scale, 10*scale, 3) uint8: a cell shows its highest
        game channel; a token that is not a frame (a malformed generated cell) shows white."""
        tok = np.asarray(tokens)
        bits = tokens_to_frame(np.minimum(tok, FRAME_VOCAB - 1), FLIGHT_CHANNELS)[..., :4]
        top = np.where(bits.any(-1), 4 - np.argmax(bits[..., ::-1], -1), 0)
        img = COLOURS[top]
        img[tok >= FRAME_VOCAB] = 255
        return img.repeat(scale, 0).repeat(scale, 1)

    def colour_key(self) -> list[tuple[str, np.ndarray]]:
        return [(n, COLOURS[i + 1]) for i, n in enumerate(CHANNEL_NAMES)] + [("not a frame", np.array([255] * 3))]

    def render_procedures(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray,
                          max_cols: int = 12) -> Tensor:
        """Image (3, H', W'): rows "expert" and "model", each the state then its procedure's
        blocks x_0, x_1, ... (the first ``max_cols``; under each block its row 10: nothing for
        a flight frame, the decision's field as a mark per column: blue left, red right, grey
        stay), with the colour key."""
        from pc_lightning.eval.pictures import labelled_grid

        cols = min(max(len(expert), len(generated)), max_cols)
        blank = np.zeros((88, 80, 3), dtype=np.uint8)

        def tile(block: np.ndarray) -> np.ndarray:
            img = np.zeros((88, 80, 3), dtype=np.uint8)
            img[:80] = self.frame_rgb(block[:10])
            row = np.asarray(block[10])
            for j, t in enumerate(row):  # the field: a mark per column, left / stay / right
                if ACTION <= t < STEP_VOCAB:
                    a = int(t - ACTION)
                    img[81:87, j * 8 + 1 : j * 8 + 7] = (60, 60, 250) if a == 1 else (250, 60, 60) if a == 3 else (200, 200, 200)
            return img

        rows = []
        for name, seq in (("expert", expert), ("model", generated)):
            state_img = np.zeros((88, 80, 3), dtype=np.uint8)
            state_img[:80] = self.frame_rgb(state)
            rows.append((name, [state_img] + [tile(seq[i]) if i < len(seq) else blank for i in range(cols)]))
        img = labelled_grid(rows, ["state"] + [f"x{i}" for i in range(cols)], self.colour_key())
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()
