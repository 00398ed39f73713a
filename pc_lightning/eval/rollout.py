"""Batched rollouts of a policy, and procedure accuracy against the expert."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from pc_lightning.eval.suite import EpisodeBatch


def run_episodes(episodes: EpisodeBatch, act: Callable[[Tensor], Tensor], device: torch.device | str = "cpu",
                 max_rounds: int = 100_000) -> dict[str, np.ndarray]:
    """Step every running episode with one batched policy call per round until all are done."""
    for _ in range(max_rounds):
        idx = np.flatnonzero(~episodes.done)
        if len(idx) == 0:
            break
        obs = torch.from_numpy(episodes.observe(idx)).long().to(device)
        episodes.step(idx, act(obs).cpu().numpy())
    return episodes.stats()


def procedure_accuracy(expert: list[np.ndarray], generated: Tensor, lengths: Tensor) -> np.ndarray:
    """Per probe: the fraction of the expert's steps x_l that the generated x_l equals exactly.

    expert: P arrays (L_p+1, H, W); generated (P, Lmax, H, W) with lengths (P,).
    A step the model did not generate counts as wrong."""
    gen = generated.cpu().numpy()
    out = np.zeros(len(expert))
    for p, x in enumerate(expert):
        n = min(len(x), int(lengths[p]))
        out[p] = (gen[p, :n] == x[:n]).reshape(n, -1).all(1).sum() / len(x)
    return out
