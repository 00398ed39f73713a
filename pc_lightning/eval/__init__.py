from pc_lightning.eval.callback import HeldOutEvaluation
from pc_lightning.eval.rollout import procedure_accuracy, run_episodes

__all__ = ["HeldOutEvaluation", "procedure_accuracy", "run_episodes"]
