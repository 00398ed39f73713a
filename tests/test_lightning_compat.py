"""The adapters of pc_lightning/lightning_compat.py on the installed Lightning: if a release
renames what they read, these fail here rather than a run's logs going quietly wrong."""

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from pc_lightning.lightning_compat import logged_step, set_purge_step


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.seen.append((logged_step(self.trainer), self.trainer.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logged_step_is_the_step_scalars_are_logged_at(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    module = Tiny()
    trainer = L.Trainer(max_steps=4, val_check_interval=2, limit_val_batches=1, logger=False, num_sanity_val_steps=0,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader, loader)
    # during a validation inside the epoch, the logger's step lags global_step by one
    assert [s for s, _ in module.seen] == [1, 3] and [g for _, g in module.seen] == [2, 4]


def test_purge_step_discards_the_dead_run_s_later_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoardLogger(tmp_path, name="run", version=0)
    for step in range(10):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("success")
    resumed = TensorBoardLogger(tmp_path, name="run", version=0)  # a resume from step 5's checkpoint
    assert set_purge_step(resumed, 5)
    for step in (5, 6):
        resumed.log_metrics({"loss": 100.0 + step}, step=step)
    resumed.finalize("success")
    assert not set_purge_step(resumed, 9)  # the writer exists: too late, and said so
    events = EventAccumulator(str(tmp_path / "run" / "version_0")).Reload().Scalars("loss")
    assert [(e.step, e.value) for e in events] == [(s, float(s)) for s in range(5)] + [(5, 105.0), (6, 106.0)]
