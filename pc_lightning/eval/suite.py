"""What a domain hands the evaluation callback: batched episodes and procedure probes.

A domain subclasses :class:`EpisodeBatch` and :class:`EvalSuite` in its own ``suite.py``
and gives the suite its :class:`Codec`. The abstract methods are required; the others are
optional hooks whose defaults do the generic thing (the codec's stop rule and pictures),
so the callback never has to ask whether a domain has them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from pc_lightning.eval.rollout import procedure_accuracy


class Codec(Protocol):
    """What the core needs of a domain's codec (a class, or a module of functions): its stop
    rule for generation and its picture of procedures. Encoding and decoding take
    domain-specific inputs and stay the domain's own."""

    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """Whether ``step`` is a procedure's last block: state (B, Hs, Ws), step (B, Hx, Wx) -> (B,) bool."""

    def render_procedures(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H', W') uint8 comparing an expert's and a generated procedure of ``state``."""


def shard(items: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s share of ``items`` (a sequence, or a count: its indices), every
    ``world_size``-th from ``rank``: the ranks' shares are disjoint and cover all."""
    if isinstance(items, (int, np.integer)):
        return np.arange(rank, int(items), world_size)
    return items[rank::world_size]


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

    ``max_procedure_steps``: the most blocks generation may produce for one decision;
    ``codec``: the domain's :class:`Codec`."""

    max_procedure_steps: int
    codec: Codec
    #: the tag of :meth:`animate`'s GIF under the suite's name: it says what is where
    animation_tag: str = "episode"

    @abstractmethod
    def episodes(self, rank: int = 0, world_size: int = 1) -> EpisodeBatch:
        """This rank's share of the suite's episodes, reset."""

    @abstractmethod
    def probes(self, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """States (P, H, W) and the expert's procedure for each, (L_p+1, H, W)."""

    # ------------------------------------------------------------ optional hooks
    def stop_fn(self, state: Tensor, step: Tensor) -> Tensor:
        """The stop rule for generation (the codec's): (B, Hs, Ws), (B, Hx, Wx) -> (B,) bool."""
        return self.codec.stop_fn(state, step)

    def render(self, state: np.ndarray, expert: np.ndarray, generated: np.ndarray) -> Tensor:
        """Image (3, H', W') uint8 comparing the expert's and the generated procedure (the codec's)."""
        return self.codec.render_procedures(state, expert, generated)

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
