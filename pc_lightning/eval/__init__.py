from pc_lightning.eval.callback import HeldOutEvaluation
from pc_lightning.eval.checkpoint import BestCheckpoint
from pc_lightning.eval.rollout import PolicyWithMemory, procedure_accuracy, run_episodes
from pc_lightning.eval.suite import EpisodeBatch, EvalSuite

__all__ = ["BestCheckpoint", "EpisodeBatch", "EvalSuite", "HeldOutEvaluation", "PolicyWithMemory", "procedure_accuracy", "run_episodes"]
