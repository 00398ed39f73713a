"""The LightningDataModule every domain builds on: cached expert data, variant-aware loaders."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from pc_lightning.data.records import Augment, ProcedureDataset, ProcedureRecords, collate
from pc_lightning.data.resume import ResumableLoader
from pc_lightning.errors import ConfigError, at_least
from pc_lightning.spec import TokenSpec, variant as get_variant

if TYPE_CHECKING:
    from pc_lightning.eval.suite import EvalSuite


#: Environment seed ranges per split, disjoint by construction ("val" serves the teacher-forced
#: validation data and the ``val_envs`` suite; ``heldout_shift`` the shifted held-out suite).
SEED_BASE = {"train": 0, "val": 1_000_000, "heldout": 2_000_000, "heldout_shift": 3_000_000}
#: How far ``seed`` moves every range, and a range's length (so 100 data seeds before a range
#: would run into the next, which :meth:`ProcedureDataModule.seeds` refuses).
SEED_STRIDE, SEED_GAP = 10_000, 1_000_000


class ProcedureDataModule(L.LightningDataModule):
    """Generates expert data once (``prepare_data``), caches it under ``data_dir`` in a file
    named by a hash of everything that determines it, and serves teacher-forcing batches.

    This is the domain contract (``docs/adding_a_domain.md``): a domain subclass sets
    ``domain`` and ``generator_version`` (and, where the defaults do not fit, the evaluation
    facts below) and implements :meth:`generator_config`,
    :meth:`generate`, :attr:`spec` and :meth:`build_suites`; :meth:`augment_fn` is an
    optional hook (default: none). It takes its own arguments and passes the rest
    (``**kwargs``, which the CLI reads from this signature) on to this class.

    Args:
        seed: offsets every split's seed range (:meth:`seeds`); the ranges stay disjoint.
        workers: processes for expert data generation.
        variant, window, n_layers: linked from the model by the CLI (they decide how
            examples are cut).
        chunk_blocks: input blocks per teacher-forcing example (a longer procedure is cut).
        batch_size, num_workers: the loaders'.
        data_dir: where expert data is cached.
        augment: a random transformation of each training example (``aug_bc`` always).
        suites: the rollout suites that :class:`~pc_lightning.eval.HeldOutEvaluation` runs
            (None: all of :meth:`eval_suites`), e.g. ``[val_envs]`` for a fit that only needs
            its checkpoint selection.
    """

    domain: str = "base"
    generator_version: str = "0"
    splits: tuple[str, ...] = ("train", "val")
    #: the ``val_envs`` metric ``best.ckpt`` is chosen on (:class:`~pc_lightning.eval.BestCheckpoint`)
    selection_metric: str = "success_rate"
    #: the suites validations roll out during fit (None: all); the chosen checkpoint then
    #: plays the others once (:class:`~pc_lightning.eval.HeldOutEvaluation`)
    fit_suites: tuple[str, ...] | None = None
    #: probe states per suite whose generated procedure is compared with the expert's
    n_probes: int = 16

    def __init__(self, seed: int = 0, workers: int = 1, variant: str = "pc", window: int | None = 1,
                 n_layers: int = 2, chunk_blocks: int = 4, batch_size: int = 32, num_workers: int = 0,
                 data_dir: str = "data", augment: bool = False, suites: list[str] | None = None) -> None:
        super().__init__()
        self.variant = get_variant(variant, "model.variant")  # linked from the model by the CLI
        at_least(1, workers=workers, chunk_blocks=chunk_blocks, batch_size=batch_size)
        at_least(0, seed=seed, num_workers=num_workers)
        self.seed = seed
        self.workers = workers
        self.window = window
        self.n_layers = n_layers
        self.chunk_blocks = chunk_blocks
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.data_dir = Path(data_dir)
        self.augment = augment or self.variant.augment
        self.suites = None if suites is None else [str(n) for n in suites]
        self.records: dict[str, ProcedureRecords] = {}
        self._suites: dict[str, "EvalSuite"] | None = None

    # ------------------------------------------------------------ for subclasses
    def generator_config(self, split: str) -> dict[str, Any]:
        """Everything that determines the expert data of ``split`` (hashed into the file name)."""
        raise NotImplementedError

    def generate(self, split: str) -> ProcedureRecords:
        """Run the expert on ``split``'s environments (show a progress bar if it takes long)."""
        raise NotImplementedError

    @property
    def spec(self) -> TokenSpec:
        """The domain's token spec, built by its codec (linked into the model by the CLI)."""
        raise NotImplementedError

    def augment_fn(self) -> Augment | None:
        """State augmentation for ``aug_bc``; None if the domain has none."""
        return None

    def build_suites(self) -> dict[str, "EvalSuite"]:
        """Rollout suites by metric prefix: ``val_envs`` (validation environments, the suite
        checkpoints are chosen on), ``heldout`` (the test set, reported only), and optionally
        ``train_envs`` and shifted suites (``heldout_shift``). Built once (:meth:`eval_suites`)."""
        raise NotImplementedError

    def eval_suites(self) -> dict[str, "EvalSuite"]:
        """The suites of :meth:`build_suites`, built on first use and kept."""
        if self._suites is None:
            self._suites = self.build_suites()
        return self._suites

    def seeds(self, split: str, n: int) -> list[int]:
        """The first ``n`` environment seeds of ``split`` (a key of :data:`SEED_BASE`): disjoint
        ranges per split, offset by ``seed`` (so that runs with other data seeds never share one)."""
        first = self.seed * SEED_STRIDE
        if first + n > SEED_GAP:
            raise ConfigError("data.init_args.seed", f"seed {self.seed} with {n} {split} environments runs past "
                              f"{split}'s seed range ({SEED_GAP:,} seeds, {SEED_STRIDE:,} per data seed)")
        return [SEED_BASE[split] + first + i for i in range(n)]

    def selected_suites(self) -> dict[str, "EvalSuite"]:
        """The suites of :meth:`eval_suites` named by ``suites`` (all where it is None), in its order."""
        suites = self.eval_suites()
        if self.suites is None:
            return suites
        unknown = [n for n in self.suites if n not in suites]
        if unknown:
            raise ConfigError("data.init_args.suites", f"{unknown} not among this DataModule's suites {sorted(suites)}")
        return {n: suites[n] for n in self.suites}

    # ------------------------------------------------------------ caching
    def cache_path(self, split: str) -> Path:
        config = {"domain": self.domain, "version": self.generator_version, "split": split,
                  **self.generator_config(split)}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        return self.data_dir / f"{self.domain}-{split}-{digest}.pt"

    def prepare_data(self) -> None:
        """Generate every split whose cache file is missing or unreadable (a truncated or
        corrupted file is regenerated, with a warning that names it)."""
        for split in self.splits:
            path = self.cache_path(split)
            records = self._load(path) if path.exists() else None
            if records is None:
                self.generate(split).save(path)
            else:
                self.records[split] = records

    def _load(self, path: Path) -> ProcedureRecords | None:
        """The records cached at ``path``, or None (with a warning naming the file) if it cannot be read."""
        try:
            return ProcedureRecords.load(path)
        except Exception as e:  # truncated, corrupted, or not a records file at all
            warnings.warn(f"the expert data cache {path} cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120]}); it is generated again", stacklevel=2)
            return None

    def setup(self, stage: str | None = None) -> None:
        for split in self.splits:
            if split not in self.records:
                path = self.cache_path(split)
                records = self._load(path) if path.exists() else None
                if records is None:  # e.g. a setup() without the trainer's prepare_data(), or a bad file
                    self.generate(split).save(path)
                    records = ProcedureRecords.load(path)
                self.records[split] = records

    # ------------------------------------------------------------ loaders
    @property
    def context_blocks(self) -> int:
        if self.window is None:
            return 1 << 30  # full attention: every earlier block
        return (self.window - 1) * self.n_layers

    def dataset(self, split: str, augment: bool = False) -> ProcedureDataset:
        if split not in self.records:
            self.setup()
        aug = self.augment_fn() if augment else None
        if augment and aug is None:
            raise ValueError(f"the {self.domain} domain has no state augmentation (variant {self.variant.name!r})")
        return ProcedureDataset(self.records[split], self.variant, self.chunk_blocks, self.context_blocks, aug,
                                start_token=self.spec.start_token)

    def _loader(self, split: str, train: bool) -> DataLoader:
        return DataLoader(self.dataset(split, augment=train and self.augment), batch_size=self.batch_size,
                          shuffle=train, drop_last=False, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches. On one process a :class:`ResumableLoader`: its order is
        a function of the seed and the epoch, and a run resumed from a checkpoint continues
        its epoch where it stopped. Under DDP, Lightning's DistributedSampler (order by seed
        and epoch; a mid-epoch resume starts the epoch's order again)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            return self._loader("train", train=True)
        return ResumableLoader(self.dataset("train", augment=self.augment), seed=torch.initial_seed() % 2**31,
                               batch_size=self.batch_size, drop_last=False, num_workers=self.num_workers,
                               collate_fn=collate, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)
