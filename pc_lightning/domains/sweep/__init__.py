"""Particles swept into bowls by two effectors (pymunk physics, a scripted expert)."""

from pc_lightning.domains.sweep.datamodule import SweepDataModule

__all__ = ["SweepDataModule"]
