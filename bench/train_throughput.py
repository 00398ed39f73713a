"""Training throughput (tokens/s) of the Lightning module vs a plain PyTorch loop, same model,
same batches, same optimizer. The ratio plain/Lightning is Lightning's overhead.

    python bench/train_throughput.py [--config conf/maze.yaml] [--steps 60]

The two loops alternate in rounds so that load from elsewhere on the machine hits both.
"""

import argparse
import itertools
import tempfile
import time

import lightning as L
import torch
import yaml

from pc_lightning.domains.maze import MazeDataModule
from pc_lightning.model import ProcedureCloner


def tokens_in(batch: dict) -> int:
    n = batch["state"][0].numel()
    return int(batch["state"].shape[0] * n + batch["step_valid"].sum() * n)


class Timer(L.Callback):
    def __init__(self) -> None:
        self.tokens = 0
        self.start = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 5 and self.start is None:  # skip warm-up
            self.start = time.perf_counter()
        if self.start is not None:
            self.tokens += tokens_in(batch)

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


def lightning_run(model_kw: dict, dm: MazeDataModule, steps: int) -> float:
    torch.manual_seed(0)
    model = ProcedureCloner(spec=dm.spec, **model_kw)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps + 5, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[timer])
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return timer.tokens / timer.seconds


def plain_run(model_kw: dict, dm: MazeDataModule, steps: int) -> float:
    torch.manual_seed(0)
    model = ProcedureCloner(spec=dm.spec, **model_kw)
    cfg = model.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    batches = itertools.cycle(dm.train_dataloader())
    tokens, start = 0, None
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        batch = next(batches)
        if start is not None:
            tokens += tokens_in(batch)
        loss = model._losses(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="conf/maze.yaml")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    cfg = yaml.safe_load(open(a.config))
    model_kw = {k: v for k, v in cfg["model"].items()}
    data_kw = dict(cfg["data"]["init_args"])
    with tempfile.TemporaryDirectory() as tmp:
        data_kw.update(data_dir=tmp, variant=model_kw.get("variant", "pc"), window=model_kw.get("window", 1),
                       n_layers=model_kw.get("n_layers", 2))
        dm = MazeDataModule(**data_kw)
        dm.prepare_data()
        dm.setup()
        lit, plain = [], []
        for _ in range(a.rounds):
            lit.append(lightning_run(model_kw, dm, a.steps))
            plain.append(plain_run(model_kw, dm, a.steps))
    lit_t, plain_t = max(lit), max(plain)
    print(f"training throughput: lightning {lit_t:.0f} tokens/s, plain loop {plain_t:.0f} tokens/s, "
          f"overhead (plain/lightning) {plain_t / lit_t:.3f} (best of {a.rounds} rounds x {a.steps} steps, {a.config})")


if __name__ == "__main__":
    main()
