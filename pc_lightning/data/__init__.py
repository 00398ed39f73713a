"""Domain-agnostic expert data: records, chunked teacher-forcing examples, cached DataModules."""

from pc_lightning.data.bins import UniformBins
from pc_lightning.data.datamodule import ProcedureDataModule, Splits
from pc_lightning.data.records import ProcedureDataset, ProcedureRecords, collate
from pc_lightning.spec import IGNORE, VARIANTS, TokenSpec

__all__ = ["IGNORE", "VARIANTS", "ProcedureDataModule", "ProcedureDataset", "ProcedureRecords", "Splits", "TokenSpec", "UniformBins",
           "collate"]
