"""What the core knows of a domain and of a variant: the token spec and the variant object.

Neither the model nor the data package imports the other to learn these; both import
this module. A domain's codec builds the :class:`TokenSpec`; a config names the variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

IGNORE = -100  # target id of a cell or an action that has no target


@dataclass
class TokenSpec:
    """Vocabularies and per-cell facts of a domain's blocks, built by its codec; the model
    is built from them, so no domain fact appears in a model config.

    state_vocab, step_vocab: token ids of state cells and of step cells.
    action_vocab: an action's bins. An int V: the action is one token in 0..V-1 (a discrete
        action; the model's actions are then (B,)). A list [V_1, .., V_D]: the action is a
        block of D tokens, token i in 0..V_i-1 (a continuous action binned per dimension,
        :class:`pc_lightning.data.bins.UniformBins`; actions (B, D)).
    step_shape: (Hx, Wx), the shape of every step block, where it differs from the state's
        (MinAtar: a 10 x 10 frame state, 11 x 10 steps whose last row holds the search's
        action, value and depth); a step cell sees the state cell at the same coordinates,
        if there is one. None: steps have the state's shape, whatever it is (the maze's
        16 x 16 or 31 x 31). In every domain x_0 is predicted by a learned *start block*, a
        step block of one reserved token (:attr:`start_token`).
    hidden_from_steps: state tokens that step blocks never see (replaced in the *context*,
        the state as step blocks see it), e.g. the maze's agent, which the BFS flood
        ignores. With a Markov window a procedure then depends on the state only through
        its context, and a rollout continues the previous step's procedure.
    hidden_as: per hidden token, the token the context shows in its place (None: token 0
        for each). PointMaze's ball tokens become FREE, or GOAL where the ball sits in the
        goal cell, so the flood still starts there.
    step_cell_weights: optional (H, W) loss weights of a step block's cells, where a few
        cells carry most of the meaning (MinAtar's action tokens beside 100 frame cells);
        None weighs every cell 1.
    step_bits: B > 0 declares that step tokens 0 .. 2**B - 1 are B-bit vectors (bit b of the
        id is feature b: MinAtar's frame cells, one bit per channel) and ids from 2**B on
        are plain symbols. A model's ``bit_head`` then predicts a cell as "bits or which
        symbol" plus B independent bits instead of a softmax over all 2**B vectors.
    """

    state_vocab: int
    step_vocab: int
    action_vocab: int | list[int]
    hidden_from_steps: list[int] = field(default_factory=list)
    hidden_as: list[int] | None = None
    step_cell_weights: list[list[float]] | None = None
    step_bits: int = 0
    step_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.hidden_from_steps = [int(t) for t in self.hidden_from_steps]
        if isinstance(self.action_vocab, (list, tuple)):
            self.action_vocab = [int(v) for v in self.action_vocab]
        if min(self.action_bins, default=0) < 1:
            raise ValueError("action_vocab must be a positive int or a non-empty list of them, "
                             f"got {self.action_vocab}")
        if self.step_shape is not None:
            self.step_shape = [int(n) for n in self.step_shape]
            if len(self.step_shape) != 2 or min(self.step_shape) < 1:
                raise ValueError(f"step_shape must be two positive sizes (rows, columns), got {self.step_shape}")
        if self.step_cell_weights is not None and self.step_shape is not None:
            shape = [len(self.step_cell_weights), len(self.step_cell_weights[0])]
            if shape != self.step_shape:
                raise ValueError(f"step_cell_weights is {shape[0]} x {shape[1]}, step_shape {self.step_shape}")
        if self.step_bits < 0 or 2**self.step_bits > self.step_vocab:
            raise ValueError(f"step_bits={self.step_bits} needs 0 <= 2**step_bits <= step_vocab={self.step_vocab}")
        if any(not 0 < t < self.state_vocab for t in self.hidden_from_steps):
            raise ValueError(f"hidden_from_steps must hold state tokens in 1..{self.state_vocab - 1}, "
                             f"got {self.hidden_from_steps}")
        if self.hidden_as is not None:
            self.hidden_as = [int(t) for t in self.hidden_as]
            check_hidden_as(self.hidden_from_steps, self.hidden_as, self.state_vocab)

    @property
    def action_bins(self) -> list[int]:
        """Bins of each of the action's D tokens."""
        return list(self.action_vocab) if isinstance(self.action_vocab, list) else [self.action_vocab]

    @property
    def action_block(self) -> bool:
        """Whether an action is a block of tokens (actions (B, D)) rather than one token ((B,))."""
        return isinstance(self.action_vocab, list)

    @property
    def start_token(self) -> int:
        """The id of the start block's cells (one past the step vocabulary): the block whose
        output predicts x_0."""
        return self.step_vocab


def check_hidden_as(hidden: "list[int] | tuple[int, ...]", shown: "list[int] | tuple[int, ...]",
                    state_vocab: int) -> None:
    """``shown[i]`` replaces hidden token ``hidden[i]``: one each, a state token that is not hidden itself."""
    if len(shown) != len(hidden):
        raise ValueError(f"hidden_as needs one token per hidden token ({len(hidden)}), got {len(shown)}")
    bad = sorted({t for t in shown if not 0 <= t < state_vocab or t in set(hidden)})
    if bad:
        raise ValueError(f"hidden_as must hold state tokens that are not hidden themselves, got {bad[:5]}")


@dataclass(frozen=True)
class Variant:
    """One way to order the same expert sequence (s, x_0..x_L, a).

    name: the config value. uses_procedure: examples hold the steps x (as inputs or as
    targets). query_at_steps: the action query is hosted at x_L (procedure cloning) rather
    than at the state block (the action never sees x). augment: states are randomly
    transformed by the domain's augmentation (actions remapped)."""

    name: str
    uses_procedure: bool
    query_at_steps: bool
    augment: bool = False


#: Every variant, by name: a new one is one line.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("pc", uses_procedure=True, query_at_steps=True),  # [s | x_0 .. x_L], a read at x_L
    Variant("aux_bc", uses_procedure=True, query_at_steps=False),  # x are targets a cannot see
    Variant("bc", uses_procedure=False, query_at_steps=False),  # [s], a read at s
    Variant("aug_bc", uses_procedure=False, query_at_steps=False, augment=True),  # bc on augmented states
)}


#: The variant names as a type, so that a config parser rejects an unknown one at its key.
VariantName = Literal[tuple(VARIANTS)]  # type: ignore[valid-type]


def variant(name: str | Variant, key: str = "model.variant") -> Variant:
    """The variant called ``name``; an unknown name is an error naming the config ``key``."""
    if isinstance(name, Variant):
        return name
    if name not in VARIANTS:
        raise ValueError(f"{key} must be one of {', '.join(VARIANTS)}; got {name!r}")
    return VARIANTS[name]
