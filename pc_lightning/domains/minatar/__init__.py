"""MinAtar games with a UCT MCTS expert whose principal variation is the procedure."""

from pc_lightning.domains.minatar.datamodule import MinAtarDataModule

__all__ = ["MinAtarDataModule"]
