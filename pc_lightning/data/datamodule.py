"""The LightningDataModule every domain builds on: cached expert data, variant-aware loaders."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import lightning as L
import torch
from torch.utils.data import DataLoader

from pc_lightning.data.parallel import run_jobs
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


#: Where each split's and suite's environments come from (a key of :data:`SEED_BASE`).
SEED_RANGE = {"train": "train", "train_envs": "train", "val": "val", "val_envs": "val", "heldout": "heldout",
              "heldout_shift": "heldout_shift"}


@dataclass(frozen=True)
class Splits:
    """How many environments each split has and how many episodes are played on each, by the
    same names in every domain. An *environment* is what a domain draws from a seed (a maze
    layout, a table, a game's seed); its episodes differ in what else is drawn (start and
    goal). The expert's data: ``train`` and ``val`` (teacher-forced validation); the rollout
    suites: ``val_envs`` (where ``best.ckpt`` is chosen), ``heldout`` (and ``heldout_shift``
    where a domain shifts the world; the test set, reported only) and ``train_envs`` (the
    first ``n_train_envs`` training environments; 0 = off)."""

    n_train: int = 5
    train_episodes: int = 1
    n_val: int = 1
    val_episodes: int = 1
    n_val_envs: int = 8
    val_envs_episodes: int = 1
    n_heldout: int = 16
    heldout_episodes: int = 1
    n_train_envs: int = 4
    train_envs_episodes: int = 1

    def environments(self, name: str) -> int:
        """Environments of split or suite ``name`` (``heldout_shift``: as many as ``heldout``)."""
        return {"train": self.n_train, "val": self.n_val, "val_envs": self.n_val_envs, "heldout": self.n_heldout,
                "heldout_shift": self.n_heldout, "train_envs": min(self.n_train_envs, self.n_train)}[name]

    def episodes(self, name: str) -> int:
        """Episodes on each environment of split or suite ``name``."""
        return {"train": self.train_episodes, "val": self.val_episodes, "val_envs": self.val_envs_episodes,
                "heldout": self.heldout_episodes, "heldout_shift": self.heldout_episodes,
                "train_envs": self.train_envs_episodes}[name]


class ProcedureDataModule(L.LightningDataModule):
    """The one DataModule: a domain's expert data generated once (``prepare_data``, in
    parallel with a progress bar), cached under ``data_dir`` in a file named by a hash of
    everything that determines it, served as teacher-forcing batches; and the domain's
    rollout suites on seed ranges disjoint per split.

    A domain is a subclass that declares only what is its own (``docs/adding_a_domain.md``):
    ``domain``, ``generator_version``, its default :class:`Splits`, :attr:`spec`,
    :meth:`generator_config`, the expert (:attr:`expert_records` and :meth:`expert_job`),
    :meth:`make_suite`, and optionally :meth:`environment_key`, :meth:`augment_fn`, the evaluation
    facts below and what the progress bar and the cache's metadata show. It takes its own
    arguments and passes the rest (``**kwargs``, which the CLI reads from this signature) on.

    Args:
        n_train, train_episodes, n_val, val_episodes, n_val_envs, val_envs_episodes,
            n_heldout, heldout_episodes, n_train_envs, train_envs_episodes: the sizes of
            :class:`Splits` (None: the domain's default; a domain that plays one episode
            per environment takes no other ``*_episodes``).
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
    data_splits: tuple[str, ...] = ("train", "val")
    #: the domain's default sizes (a subclass sets its own)
    default_splits: Splits = Splits()
    #: whether an environment holds several episodes (False: ``*_episodes`` must be 1)
    episodes_per_environment: bool = True
    #: whether the domain has a ``heldout_shift`` suite
    shifted: bool = False
    #: the ``val_envs`` metric ``best.ckpt`` is chosen on (:class:`~pc_lightning.eval.BestCheckpoint`)
    selection_metric: str = "success_rate"
    #: the suites validations roll out during fit (None: all); the chosen checkpoint then
    #: plays the others once (:class:`~pc_lightning.eval.HeldOutEvaluation`)
    fit_suites: tuple[str, ...] | None = None
    #: probe states per suite whose generated procedure is compared with the expert's
    n_probes: int = 16
    #: what the expert's progress bar calls the expert and an environment
    expert_name: str = "expert"
    environment_name: str = "environment"

    def __init__(self, n_train: int | None = None, train_episodes: int | None = None, n_val: int | None = None,
                 val_episodes: int | None = None, n_val_envs: int | None = None, val_envs_episodes: int | None = None,
                 n_heldout: int | None = None, heldout_episodes: int | None = None, n_train_envs: int | None = None,
                 train_envs_episodes: int | None = None, seed: int = 0, workers: int = 1, variant: str = "pc",
                 window: int | None = 1, n_layers: int = 2, chunk_blocks: int = 4, batch_size: int = 32,
                 num_workers: int = 0, data_dir: str = "data", augment: bool = False,
                 suites: list[str] | None = None) -> None:
        super().__init__()
        self.variant = get_variant(variant, "model.variant")  # linked from the model by the CLI
        given = dict(n_train=n_train, train_episodes=train_episodes, n_val=n_val, val_episodes=val_episodes,
                     n_val_envs=n_val_envs, val_envs_episodes=val_envs_episodes, n_heldout=n_heldout,
                     heldout_episodes=heldout_episodes, n_train_envs=n_train_envs,
                     train_envs_episodes=train_envs_episodes)
        self.sizes = replace(self.default_splits, **{k: v for k, v in given.items() if v is not None})
        sizes = {f.name: getattr(self.sizes, f.name) for f in fields(Splits)}
        at_least(1, **{k: v for k, v in sizes.items() if k != "n_train_envs"})
        at_least(0, n_train_envs=self.sizes.n_train_envs)  # 0: no train_envs suite
        if not self.episodes_per_environment:
            for k, v in sizes.items():
                if k.endswith("_episodes") and v != 1:
                    raise ConfigError(f"data.init_args.{k}", f"must be 1: {self.domain} plays one episode per "
                                      f"{self.environment_name} (set the number of {self.environment_name}s); got {v}")
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
    @property
    def spec(self) -> TokenSpec:
        """The domain's token spec, built by its codec (linked into the model by the CLI)."""
        raise NotImplementedError

    def generator_config(self, split: str) -> dict[str, Any]:
        """Everything that determines the expert data of ``split`` (hashed into the file name)."""
        raise NotImplementedError

    #: the expert on one environment: a module-level function (it runs in worker processes)
    #: that returns records (``states``, ``procedures``, ``actions``, ``groups``, and anything
    #: :meth:`expert_meta` and :meth:`progress` read)
    expert_records: Callable[..., dict[str, Any]]

    def expert_job(self, seed: int, group: int, episodes: int) -> dict[str, Any]:
        """The keyword arguments of :attr:`expert_records` for ``episodes`` episodes on the
        environment of ``seed`` (``group``: its index in the split, kept in the records)."""
        raise NotImplementedError

    def make_suite(self, name: str, seeds: list[int], episodes: int) -> "EvalSuite":
        """The rollout suite ``name`` (``val_envs``, ``heldout``, ``heldout_shift``,
        ``train_envs``) on the environments of ``seeds``, ``episodes`` on each."""
        raise NotImplementedError

    def environment_key(self, suite: str, seed: int) -> bytes | None:
        """A comparable fingerprint of the environment of ``seed`` in ``suite`` where seeds
        can draw equal environments (a small maze), so that no suite plays a training one
        and held-out none of validation's; None (the default): seeds never collide."""
        return None

    def augment_fn(self) -> Augment | None:
        """State augmentation for ``aug_bc``; None if the domain has none."""
        return None

    def progress(self, part: dict[str, Any]) -> dict[str, Any]:
        """What the expert's progress bar shows after one environment's records; none by default."""
        return {}

    def expert_meta(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Facts about the expert kept with the cached records (e.g. its success); none by default."""
        return {}

    # ------------------------------------------------------------ the core
    def seeds(self, split: str, n: int | None = None) -> list[int]:
        """The first ``n`` (default: the split's number of environments) environment seeds of
        split or suite ``split``: disjoint ranges per split (:data:`SEED_RANGE`), offset by
        ``seed`` (so that runs with other data seeds never share one)."""
        n = self.sizes.environments(split) if n is None else n
        first = self.seed * SEED_STRIDE
        if first + n > SEED_GAP:
            raise ConfigError("data.init_args.seed", f"seed {self.seed} with {n} {split} environments runs past "
                              f"{split}'s seed range ({SEED_GAP:,} seeds, {SEED_STRIDE:,} per data seed)")
        return [SEED_BASE[SEED_RANGE[split]] + first + i for i in range(n)]

    def generate(self, split: str) -> ProcedureRecords:
        """The expert on every environment of ``split``, in ``workers`` processes with a progress bar."""
        jobs = [self.expert_job(s, g, self.sizes.episodes(split)) for g, s in enumerate(self.seeds(split))]
        parts = run_jobs(type(self).expert_records, jobs, self.workers,
                         f"{self.expert_name}, {split} {self.environment_name}s", unit=self.environment_name,
                         postfix=self.progress)
        return ProcedureRecords.concat(parts, meta=self.expert_meta(parts))

    def build_suites(self) -> dict[str, "EvalSuite"]:
        """Rollout suites by metric prefix: ``val_envs``, ``heldout``, ``heldout_shift`` (where
        the domain has a shift) and ``train_envs`` (unless 0 environments). Where
        :meth:`environment_key` tells environments apart, validation and held-out ones take the first
        seeds of their range whose environment no earlier split has."""
        taken = {self.environment_key("train", s) for s in self.seeds("train")} - {None}
        names = ["val_envs", "heldout"] + ["heldout_shift"] * self.shifted
        suites = {}
        for name in names:
            seeds, found = self.new_environments(name, taken)
            taken |= found
            suites[name] = self.make_suite(name, seeds, self.sizes.episodes(name))
        if self.sizes.environments("train_envs") > 0:
            suites["train_envs"] = self.make_suite("train_envs", self.seeds("train_envs"),
                                                   self.sizes.train_envs_episodes)
        return suites

    def new_environments(self, suite: str, taken: set[bytes]) -> tuple[list[int], set[bytes]]:
        """The first seeds of ``suite``'s range whose :meth:`environment_key` is not in ``taken`` (as
        many as the suite has environments), and their layouts. Seed ranges are disjoint
        already; on large mazes layouts never collide, on tiny ones (7x7 has a handful) they can."""
        n = self.sizes.environments(suite)
        if self.environment_key(suite, self.seeds(suite, 1)[0]) is None:
            return self.seeds(suite), set()
        seeds, layouts = [], set()
        for s in self.seeds(suite, 100 * n + 100):
            layout = self.environment_key(suite, s)
            if layout not in taken:
                seeds.append(s)
                layouts.add(layout)
                if len(seeds) == n:
                    return seeds, layouts
        key = {"val_envs": "n_val_envs", "heldout": "n_heldout", "heldout_shift": "n_heldout"}[suite]
        raise ConfigError(f"data.init_args.{key}", f"found only {len(seeds)} {suite} {self.environment_name}s that "
                          f"no earlier split has, of {n} asked for: use larger ones or fewer of them")

    def eval_suites(self) -> dict[str, "EvalSuite"]:
        """The suites of :meth:`build_suites`, built on first use and kept."""
        if self._suites is None:
            self._suites = self.build_suites()
        return self._suites

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
        for split in self.data_splits:
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
        for split in self.data_splits:
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
