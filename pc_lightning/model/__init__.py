from pc_lightning.model.generate import Chain, Generation, act_from_state, generate
from pc_lightning.model.module import ProcedureCloner
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig

__all__ = ["Chain", "Generation", "ProcedureCloner", "ProcedureTransformer", "TransformerConfig", "act_from_state",
           "generate"]
