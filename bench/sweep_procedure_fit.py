"""How much of the sweep's procedure a model learns, stage by stage, without rollouts:
train conf/sweep.yaml's model for --steps on the training tables, then score its
teacher-forced predictions on the validation tables per stage and column kind.

    python bench/sweep_procedure_fit.py --steps 500 [--set n_layers=3] [--set d_model=128]

One line per stage: the accuracy of its coordinate cells (exact, and within one level),
and of its other cells; then the action's accuracy. A quick check of whether an encoding
is learnable at all, before a whole fit with held-out rollouts.
"""

import argparse
import time

import lightning as L
import numpy as np
import torch
import yaml

from pc_lightning.domains.sweep import SweepDataModule
from pc_lightning.model import ProcedureCloner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/sweep.yaml")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="model option=value (YAML value)")
    a = p.parse_args()
    conf = yaml.safe_load(open(a.config))
    model_args = {k: v for k, v in conf["model"].items() if k != "variant"}
    for kv in a.set:
        k, v = kv.split("=", 1)
        model_args[k] = yaml.safe_load(v)
    L.seed_everything(a.seed, verbose=False)
    dm = SweepDataModule(**conf["data"]["init_args"], window=model_args.get("window", 1),
                         n_layers=model_args.get("n_layers", 2))
    dm.prepare_data()
    dm.setup()
    model = ProcedureCloner("pc", spec=dm.spec, decay_steps=a.steps, **model_args)
    trainer = L.Trainer(max_steps=a.steps, logger=False, enable_checkpointing=False, limit_val_batches=0,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    seconds = time.perf_counter() - start
    model.eval()
    r = dm.records["val"]
    n = len(r)
    state = r.states[:n].long()  # (n, S, S)
    steps = torch.stack([r.procedure(i) for i in range(n)]).long()  # (n, 3, P + 2, 5)
    start_block = torch.full((n, 1, *steps.shape[2:]), dm.spec.start_token)
    with torch.no_grad():
        _, out, act = model.net(state, torch.cat([start_block, steps], 1), action_host=torch.full((n,), 3))
    pred = model.net.cell_argmax(out).reshape(n, 4, *steps.shape[2:])[:, :3]
    levels = dm.codec.levels
    print(f"{a.steps} steps in {seconds:.0f} s; options {a.set or 'as configured'}; {n} validation states")
    for l, name in enumerate(["x0 locate", "x1 assign", "x2 plan"]):
        t, g = steps[:, l], pred[:, l]
        coord = torch.zeros_like(t, dtype=torch.bool)
        coord[..., :2] = t[..., :2] < levels
        exact = (g == t)[coord].float().mean().item()
        near = ((g - t).abs() <= 1)[coord].float().mean().item()
        other = (g == t)[~coord].float().mean().item()
        print(f"{name}: coordinates exact {exact:.3f}, within 1 level {near:.3f}; other cells {other:.3f}")
    acc = (act.argmax(-1) == r.actions[:n]).float().mean().item()
    print(f"action tokens (read from the expert's x2): {acc:.3f}")


if __name__ == "__main__":
    main()
