"""A callback for tests/test_resume.py: the process dies (as under kill -9) at a step."""

import os

from lightning.pytorch.callbacks import Callback


class DieAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os._exit(9)  # no teardown, no checkpoint: what kill -9 leaves behind
