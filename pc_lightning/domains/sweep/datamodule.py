"""SweepDataModule: the scripted expert's episodes on training tables; rollout suites on
validation tables (checkpoint selection), held-out tables (the report), held-out tables
with more particles than training ever shows (the shift) and the training tables (the gap)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from pc_lightning.data import ProcedureDataModule, Splits
from pc_lightning.data.datamodule import SEED_BASE
from pc_lightning.domains.sweep.codec import Codec, DihedralAugment
from pc_lightning.domains.sweep.env import SweepConfig, sample_configuration
from pc_lightning.domains.sweep.suite import SweepSuite, play_expert
from pc_lightning.errors import ConfigError, at_least, dataclass_from
from pc_lightning.spec import TokenSpec



def expert_episode(seed: int, group: int, counts: tuple[int, int], max_particles: int, n_bins: int,
                   table: dict[str, Any]) -> dict[str, Any]:
    """One expert episode as records: states, procedures, actions (bin ids), and its outcome."""
    cfg = SweepConfig(**table)
    codec = Codec(cfg, max_particles)
    run = play_expert(seed, tuple(counts), cfg, codec, n_bins)
    return {"states": run["states"], "procedures": [codec.encode_procedure(p) for p in run["plans"]],
            "actions": [p.action.tolist() for p in run["plans"]], "groups": [group] * len(run["plans"]),
            "solved": run["solved"], "steps": run["steps"]}


def check_table(table: dict[str, Any] | None, n_particles: int) -> SweepConfig:
    """The table of ``data.init_args.table`` (overrides of :class:`SweepConfig`), checked before
    any episode is played: known fields, positive sizes, and room for ``n_particles`` (one
    configuration is drawn), else a :class:`ConfigError` naming the key."""
    key = "data.init_args.table"
    cfg = dataclass_from(SweepConfig, table, key)
    at_least(1, prefix=key, size=cfg.size, n_bowls=cfg.n_bowls, substeps=cfg.substeps, max_steps=cfg.max_steps)
    for name in ("particle_radius", "effector_radius", "bowl_radius", "max_speed", "control_dt"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{key}.{name}", f"must be > 0; got {getattr(cfg, name)!r}")
    try:
        sample_configuration(SEED_BASE["train"], n_particles, cfg)
    except ValueError:  # the rejection sampler found no room, or the bowls' margins cross
        raise ConfigError(key, f"a {cfg.size} x {cfg.size} table has no room for {cfg.n_bowls} bowls of radius "
                          f"{cfg.bowl_radius}, {n_particles} particles and 2 effectors; use a larger size or fewer "
                          "of them") from None
    return cfg


class SweepDataModule(ProcedureDataModule):
    """Procedure cloning of the scripted sweeping expert (``docs/domains/sweep.md``); an
    environment is a table configuration, one episode each.

    Args:
        particles: the training range of particle counts, [low, high].
        shift_particles: the ``heldout_shift`` suite's range (outside the training range).
        max_particles: particle rows of a step block (the most particles any suite has).
        n_bins: velocity bins per axis of the action block.
        table: overrides of :class:`~pc_lightning.domains.sweep.env.SweepConfig` (size,
            radii, speeds, step limit).
        Others (the splits' sizes, ``seed``, ``workers``, the loaders'): see
        :class:`~pc_lightning.data.ProcedureDataModule`. The defaults: 40 training tables
        (every decision of the expert's episode is a record), 4 validation tables; suites on
        16 validation tables (the checkpoint's choice), 32 held-out tables in each held-out
        suite (the test set) and 8 training tables.
    """

    domain = "sweep"
    generator_version = "3"  # 3: the effectors' floods on the table's grid; 2: waypoints in coordinate rows
    selection_metric = "fraction_in_bowls"
    fit_suites = ("val_envs",)  # a weak model's episodes run to the step limit: the test suites once, at the end
    default_splits = Splits(n_train=40, n_val=4, n_val_envs=16, n_heldout=32, n_train_envs=8)
    episodes_per_environment = False
    shifted = True
    expert_name, environment_name = "sweep expert", "table"
    expert_records = staticmethod(expert_episode)

    def __init__(self, particles: tuple[int, int] = (4, 8), shift_particles: tuple[int, int] = (10, 12),
                 max_particles: int = 12, n_bins: int = 9, table: dict[str, Any] | None = None, workers: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(workers=workers, **kwargs)
        at_least(1, max_particles=max_particles)
        at_least(2, n_bins=n_bins)
        self.particles, self.shift_particles = tuple(particles), tuple(shift_particles)
        for key, (lo, hi) in (("particles", self.particles), ("shift_particles", self.shift_particles)):
            if not 1 <= lo <= hi <= max_particles:
                raise ConfigError(f"data.init_args.{key}", f"must be [low, high] with 1 <= low <= high <= "
                                  f"max_particles={max_particles}; got {[lo, hi]}")
        self.table = check_table(table, max(self.particles[1], self.shift_particles[1]))
        self.codec = Codec(self.table, max_particles)
        self.max_particles = max_particles
        self.n_bins = n_bins

    @property
    def spec(self) -> TokenSpec:
        return TokenSpec(self.codec.state_vocab, self.codec.step_vocab, [self.n_bins] * 4)

    def augment_fn(self) -> DihedralAugment:
        """A random symmetry of the table per example (``aug_bc``; ``augment: true`` for the others)."""
        return DihedralAugment(self.codec, self.n_bins)

    def generator_config(self, split: str) -> dict:
        return {"seeds": self.seeds(split), "particles": self.particles, "max_particles": self.max_particles,
                "n_bins": self.n_bins, "table": asdict(self.table)}

    def expert_job(self, seed: int, group: int, episodes: int) -> dict[str, Any]:
        return {"seed": seed, "group": group, "counts": self.particles, "max_particles": self.max_particles,
                "n_bins": self.n_bins, "table": asdict(self.table)}

    def progress(self, part: dict[str, Any]) -> dict[str, Any]:
        return {"solved": part["solved"], "steps": part["steps"]}

    def expert_meta(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"expert_success": float(np.mean([p["solved"] for p in parts])),
                "expert_steps": float(np.mean([p["steps"] for p in parts]))}

    def make_suite(self, name: str, seeds: list[int], episodes: int) -> SweepSuite:
        counts = self.shift_particles if name == "heldout_shift" else self.particles
        return SweepSuite(seeds, counts, cfg=self.table, codec=self.codec, n_bins=self.n_bins)
