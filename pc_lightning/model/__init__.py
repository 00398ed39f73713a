from pc_lightning.model.module import ProcedureCloner
from pc_lightning.model.transformer import Generation, ProcedureTransformer, TransformerConfig

__all__ = ["Generation", "ProcedureCloner", "ProcedureTransformer", "TransformerConfig"]
