"""What a domain hands the evaluation callback: batched episodes and procedure probes.

A domain subclasses :class:`EpisodeBatch` and :class:`EvalSuite` in its own ``suite.py``.
The abstract methods are required; the others are optional hooks whose defaults do the
generic thing, so the callback never has to ask whether a domain has them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from torch import Tensor

from pc_lightning.eval.rollout import procedure_accuracy


class EpisodeBatch(ABC):
    """E episodes stepped together; ``done`` (E,) bool marks the finished ones."""

    done: np.ndarray

    @abstractmethod
    def observe(self, idx: np.ndarray) -> np.ndarray:
        """State tokens (len(idx), H, W) of the running episodes ``idx``."""

    @abstractmethod
    def step(self, idx: np.ndarray, actions: np.ndarray) -> None:
        """Apply one action to each running episode in ``idx``."""

    @abstractmethod
    def stats(self) -> dict[str, np.ndarray]:
        """Per-episode values to average, by metric name (e.g. success_rate, return, path_ratio)."""


class EvalSuite(ABC):
    """A set of evaluation environments of one domain (e.g. held-out mazes).

    ``max_procedure_steps``: the most blocks generation may produce for one decision."""

    max_procedure_steps: int
    #: the tag of :meth:`animate`'s GIF under the suite's name: it says what is where
    animation_tag: str = "episode"

    @abstractmethod
    def episodes(self, rank: int = 0, world_size: int = 1) -> EpisodeBatch:
        """This rank's share of the suite's episodes, reset."""

    @abstractmethod
    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """The domain's stop rule for generation: (B, H, W) x2 -> (B,) bool."""

    @abstractmethod
    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """States (P, H, W) and the expert's procedure for each, (L_p+1, H, W)."""

    @abstractmethod
    def render(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H', W') uint8 comparing the expert's and the generated procedure."""

    # ------------------------------------------------------------ optional hooks
    def procedure_accuracy(self, expert: list[np.ndarray], generated: Tensor, lengths: Tensor) -> np.ndarray:
        """Per probe (P,): the fraction of the expert's steps generated exactly (logged as
        ``{suite}/procedure_acc``). A domain may count only the parts that matter."""
        return procedure_accuracy(expert, generated, lengths)

    def procedure_metrics(self, states: np.ndarray, expert: list[np.ndarray], generated: Tensor,
                          lengths: Tensor) -> dict[str, np.ndarray]:
        """Further per-probe procedure metrics, logged as ``{suite}/{name}``, from the probes'
        states (P, H, W) (those :meth:`probes` returned), the expert's procedures and the
        generated ones (P, Lmax, Hx, Wx) with their lengths (P,); none by default."""
        return {}

    def animate(self, module) -> np.ndarray | None:
        """One episode played by ``module`` as frames (T, H, W, 3) uint8, logged as a GIF
        tagged ``{suite}/{animation_tag}``; None (the default): no animation."""
        return None
