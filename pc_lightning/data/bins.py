"""Uniform per-dimension bins: how a continuous vector (an effector's velocity, a coordinate)
becomes a block of tokens, and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UniformBins:
    """D dimensions, dimension i cut into ``n[i]`` equal bins over [low[i], high[i]].

    ``encode`` maps values (clipped to the range) to bin ids, ``decode`` maps ids to bin
    centres, so a round trip is off by at most :attr:`max_error` (half a bin) per dimension
    inside the range. ``vocab`` is what :class:`pc_lightning.spec.TokenSpec` takes as the
    action's bins."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    n: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("low", "high", "n"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.low) == len(self.high) == len(self.n) or not self.n:
            raise ValueError(f"low, high and n need one entry per dimension, got {self.low}, {self.high}, {self.n}")
        if any(h <= lo for lo, h in zip(self.low, self.high)) or min(self.n) < 1:
            raise ValueError(f"bins need low < high and n >= 1 per dimension, got {self.low}, {self.high}, {self.n}")

    @property
    def vocab(self) -> list[int]:
        return list(self.n)

    @property
    def width(self) -> np.ndarray:
        """(D,) the bin width per dimension."""
        return (np.asarray(self.high) - np.asarray(self.low)) / np.asarray(self.n)

    @property
    def max_error(self) -> np.ndarray:
        """(D,) the largest round-trip error inside the range: half a bin."""
        return self.width / 2

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Values (..., D) -> bin ids (..., D) int64 (values outside the range go to the edge bins)."""
        x = np.asarray(x, dtype=np.float64)
        ids = np.floor((x - np.asarray(self.low)) / self.width).astype(np.int64)
        return np.clip(ids, 0, np.asarray(self.n) - 1)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Bin ids (..., D) -> bin centres (..., D) float64."""
        return np.asarray(self.low) + (np.asarray(ids, dtype=np.float64) + 0.5) * self.width
