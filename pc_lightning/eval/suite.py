"""What a domain hands the evaluation callback: batched episodes and procedure probes."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from torch import Tensor


class EpisodeBatch(Protocol):
    """E episodes stepped together."""

    done: np.ndarray  # (E,) bool

    def observe(self, idx: np.ndarray) -> np.ndarray:
        """State tokens (len(idx), H, W) of the running episodes ``idx``."""

    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        """Apply one action to each running episode in ``idx``."""

    def stats(self) -> dict[str, np.ndarray]:
        """Per-episode values to average, by metric name (e.g. success, return, path_ratio)."""


class EvalSuite(Protocol):
    """A set of evaluation environments of one domain (e.g. held-out mazes)."""

    max_procedure_steps: int

    def episodes(self, rank: int, world_size: int) -> EpisodeBatch:
        """This rank's share of the suite's episodes, reset."""

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """The domain's stop rule for generation: (B, H, W) x2 -> (B,) bool."""

    def probes(self, rank: int, world_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """States (P, H, W) and the expert's procedure for each, (L_p+1, H, W)."""

    def render(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H', W') uint8 comparing the expert's and the generated procedure."""

    # Optional, looked up with hasattr by the callback:
    #   procedure_accuracy(expert, generated, lengths) -> (P,): replaces the exact-step default;
    #   procedure_metrics(expert, generated, lengths) -> {name: (P,)}: further metrics, logged
    #     as {suite}/{name};
    #   animate(module) -> (T, H, W, 3) uint8: one episode, logged as a GIF;
    #   constrain_fn(state, x_l, x_next) -> x_next, or None: constrained decoding (see
    #     ProcedureTransformer.generate).
