"""Batched rollouts of a policy, and procedure accuracy against the expert."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from pc_lightning.eval.suite import EpisodeBatch
    from pc_lightning.model import Chain, ProcedureCloner


def run_episodes(episodes: "EpisodeBatch", act: Callable[[Tensor, np.ndarray], Tensor],
                 device: torch.device | str = "cpu", max_rounds: int = 100_000,
                 max_batch: int | None = None) -> dict[str, np.ndarray]:
    """Step every running episode, one batched policy call per round (per ``max_batch``
    episodes where given), until all are done.

    ``act(obs, idx)`` gets the states (len(idx), H, W) of the running episodes ``idx``.
    ``max_batch`` bounds the memory of one call (the generation's attention and KV caches
    grow with the episodes in it) without changing what an episode does: episodes are
    independent, so a round in chunks acts as one call does."""
    for _ in range(max_rounds):
        idx = np.flatnonzero(~episodes.done)
        if len(idx) == 0:
            break
        obs = torch.from_numpy(episodes.observe(idx)).long().to(device)
        size = len(idx) if max_batch is None else max(1, max_batch)
        actions = [act(obs[lo : lo + size], idx[lo : lo + size]).cpu() for lo in range(0, len(idx), size)]
        episodes.step(idx, torch.cat(actions).numpy())
    return episodes.stats()


class PolicyWithMemory:
    """A policy over E episodes that hands each episode's last procedure back to the model,
    so a reusable procedure continues instead of restarting at every step: the episode
    memory of a rollout, ``act(obs, idx)`` for :func:`run_episodes`."""

    def __init__(self, module: "ProcedureCloner", n_episodes: int, stop_fn: Callable[[Tensor, Tensor], Tensor],
                 max_procedure_steps: int, reuse: bool = True) -> None:
        self.module = module
        self.reuse = reuse
        self.chains: list["Chain | None"] = [None] * n_episodes
        self.stop_fn = stop_fn
        self.max_procedure_steps = max_procedure_steps
        self.forward_blocks = 0
        self.actions = 0

    def __call__(self, obs: Tensor, idx: np.ndarray) -> Tensor:
        prefixes = [self.chains[i] for i in idx] if self.reuse else None
        actions, gen = self.module.act(obs, self.stop_fn, self.max_procedure_steps, prefixes)
        if gen is not None:
            for j, i in enumerate(idx):
                self.chains[i] = gen.chains[j]
            self.forward_blocks += gen.forward_blocks
        self.actions += len(idx)
        return actions


def procedure_accuracy(expert: list[np.ndarray], generated: Tensor, lengths: Tensor,
                       match: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Per probe: the fraction of the expert's steps x_l that the generated x_l matches
    (equals exactly, or by ``match(expert (n, ...), generated (n, ...)) -> (n,) bool``).

    expert: P arrays (L_p+1, ...); generated (P, Lmax, ...) with lengths (P,).
    A step the model did not generate counts as wrong; a probe with no expert step is NaN."""
    gen = generated.cpu().numpy()
    out = np.full(len(expert), np.nan)
    for p, x in enumerate(expert):
        if not len(x):
            continue
        n = max(0, min(len(x), int(lengths[p])))
        if n == 0:  # nothing generated where the expert has steps (e.g. stopped before them)
            out[p] = 0.0
            continue
        hits = match(x[:n], gen[p, :n]) if match is not None else (gen[p, :n] == x[:n]).reshape(n, -1).all(1)
        out[p] = hits.sum() / len(x)
    return out
