from pc_lightning.eval.callback import HeldOutEvaluation
from pc_lightning.eval.rollout import PolicyWithMemory, procedure_accuracy, run_episodes

__all__ = ["HeldOutEvaluation", "PolicyWithMemory", "procedure_accuracy", "run_episodes"]
