"""``best.ckpt``: the checkpoint chosen on the validation environments, on the metric the
domain declares, so that one config block serves every domain."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from pc_lightning.data.datamodule import ProcedureDataModule


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` keeping the checkpoint with the highest
    ``val_envs/<metric>``, where ``<metric>`` is the DataModule's
    :attr:`~pc_lightning.data.ProcedureDataModule.selection_metric` (the maze's
    ``success_rate``, MinAtar's ``return``, the sweep's ``fraction_in_bowls``), unless
    ``monitor`` names one. Held-out suites are never chosen on.

    Args:
        monitor: the logged metric to choose on (None: the domain's, on ``val_envs``).
        mode, filename, **kwargs: as ``ModelCheckpoint``'s (defaults ``max``, ``best``).
    """

    def __init__(self, monitor: str | None = None, mode: str = "max", filename: str = "best", **kwargs: Any) -> None:
        super().__init__(monitor=monitor, mode=mode, filename=filename, **kwargs)

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key for the same settings: a run saved before this class
        existed (with a plain ``ModelCheckpoint``) resumes with its best score."""
        key = super().state_key
        return "ModelCheckpoint" + key.removeprefix(type(self).__qualname__)

    def resolve_monitor(self, datamodule: object) -> str | None:
        """Set (where not given) and return the monitored metric for ``datamodule``."""
        if self.monitor is None and isinstance(datamodule, ProcedureDataModule):
            self.monitor = f"val_envs/{datamodule.selection_metric}"
        return self.monitor

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.resolve_monitor(trainer.datamodule)
        super().setup(trainer, pl_module, stage)
