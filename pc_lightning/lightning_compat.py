"""The places where Lightning has no public API for what the project needs: one small adapter
each, so that nothing else in the package touches a private attribute, and
``tests/test_lightning_compat.py`` fails the day a Lightning release changes one."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


def logged_step(trainer: L.Trainer) -> int:
    """The step Lightning's logger connector logs scalars at: the batches that stepped the
    optimizer. ``trainer.global_step`` is one ahead of it during a validation inside a
    training epoch, so images logged at it would not sit beside their scalars."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def set_purge_step(logger: TensorBoardLogger, step: int) -> bool:
    """Have ``logger``'s TensorBoard writer, if it is not created yet, discard this run's
    events from ``step`` on (TensorBoard's ``purge_step``); returns whether it was set.
    A resumed run logs the dead run's unsaved steps again, and its folder then shows each once."""
    if logger._experiment is not None:
        return False
    logger._kwargs["purge_step"] = step
    return True
