"""MinAtar games with a search expert guided by a learned prior and value; the procedure is
what the search computed per root action, then its principal variation."""

from pc_lightning.domains.minatar.datamodule import MinAtarDataModule

__all__ = ["MinAtarDataModule"]
