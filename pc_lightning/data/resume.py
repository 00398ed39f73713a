"""A training loader that resumes exactly where a checkpoint left it.

Lightning restores the model, the optimizer, the schedule and the step, but a plain
shuffled ``DataLoader`` starts its epoch again with a fresh order drawn from the global
RNG, so a run resumed mid-epoch sees other batches than the run it continues.
:class:`ResumableLoader` fixes both halves:

- the order of epoch e is a function of (seed, e) only (:class:`EpochSampler`), and so is
  each example's augmentation seed (the sampler hands the dataset (index, seed) pairs);
- it implements ``state_dict`` / ``load_state_dict`` (Lightning's stateful-loader
  interface: the state goes into the checkpoint): the seed and the batches of the
  current epoch already served. A resumed loader serves only the rest of that epoch.

Its worker processes draw their seeds from the loader's own generator, never from the
global RNG. With this, a run killed and resumed from ``last.ckpt`` trains on the same
batches as the uninterrupted one (``tests/test_resume.py``).

Under DDP Lightning puts its DistributedSampler in, whose order is also a function of
(seed, epoch); there a mid-epoch resume starts that epoch's order again (documented in
``docs/multi_node.md``).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class EpochSampler(Sampler):
    """A permutation of range(n) per epoch, a function of (seed, epoch), as (index, seed)
    pairs, the seed being the example's augmentation seed. ``resume_at`` (epoch, items):
    that epoch, once, starts that many items in."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, int(seed), 0
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)  # (n,)
        seeds = torch.randint(2**62, (self.n,), generator=g)  # (n,) one augmentation seed per position
        skip = self.resume_at[1] if self.resume_at and self.resume_at[0] == self.epoch else 0
        self.resume_at = None
        for i in range(skip, self.n):
            yield int(order[i]), int(seeds[i])


class ResumableLoader(DataLoader):
    """A shuffled training ``DataLoader`` over an :class:`EpochSampler`, with Lightning's
    ``state_dict`` / ``load_state_dict``; ``len`` is always the whole epoch's batches."""

    def __init__(self, dataset, seed: int, batch_size: int, **kwargs: Any) -> None:
        self._seed = int(seed)
        super().__init__(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), self._seed),
                         generator=torch.Generator().manual_seed(self._seed), **kwargs)
        self._served = 0  # batches of the current epoch handed out

    def __iter__(self):
        at = self.sampler.resume_at
        self._served = at[1] // self.batch_size if at and at[0] == self.sampler.epoch else 0
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"seed": self._seed, "epoch": self.sampler.epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._seed = self.sampler.seed = int(state["seed"])
        self.generator.manual_seed(self._seed)
        self.sampler.set_epoch(int(state["epoch"]))
        self.sampler.resume_at = (int(state["epoch"]), min(int(state["batches"]) * self.batch_size, len(self.sampler)))
