"""Domain-agnostic expert data: records, chunked teacher-forcing examples, cached DataModules."""

from pc_lightning.data.datamodule import ProcedureDataModule
from pc_lightning.data.records import IGNORE, VARIANTS, ProcedureDataset, ProcedureRecords, TokenSpec, collate

__all__ = ["IGNORE", "VARIANTS", "ProcedureDataModule", "ProcedureDataset", "ProcedureRecords", "TokenSpec", "collate"]
