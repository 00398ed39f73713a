"""Which parts of the MinAtar procedure does a PC checkpoint read from the state?

Teacher-forced (every input block is the expert's), it reports the accuracy of each root
action's score bin in x_0 (predicted from the state alone, by the start block), of the
decision in x_1 (read from the expert's x_0), and of the action, each next to the
majority-class accuracy of the same cell on the same records. A cell at its majority rate
is a cell the model writes without reading the state (docs/notes, 2026-12-02 and 2026-12-03).

    python bench/minatar_procedure_probe.py --ckpt runs/minatar_pc/version_0/checkpoints/best.ckpt \
        --game breakout --split val

The records are the data module's cache for ``--split`` (built first if missing), with
``--train-episodes`` / ``--val-episodes`` as in the run's config.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch
import yaml

from pc_lightning.data import ProcedureDataset, collate
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.codec import COL_DECISION
from pc_lightning.model import ProcedureCloner


def probe(module: ProcedureCloner, dm: MinAtarDataModule, split: str, batch_size: int = 64
          ) -> tuple[dict[str, tuple[float, float, int]], tuple[float, int]]:
    """Per cell name: (model accuracy, majority accuracy, cells); and the action's accuracy."""
    records = dm.records[split]
    ds = ProcedureDataset(records, "pc", chunk_blocks=64, start_token=module.spec.start_token)
    hits: dict[str, list[bool]] = defaultdict(list)
    targets: dict[str, list[int]] = defaultdict(list)
    act_hits = 0
    # input block j (the start block, then x_0 ..) predicts x_j: (j, row-10 column) per cell
    cells = {f"x_0 score of root action {j}": (0, j) for j in range(dm.codec.n_root)}
    cells["x_1 decision"] = (1, COL_DECISION)
    with torch.no_grad():
        for lo in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(lo, min(len(ds), lo + batch_size))])
            _, step_out, action_out = module.net(batch["state"], batch["steps"], batch["step_valid"],
                                                 batch["action_host"], batch["step_segment"], raw=True)
            h = batch["steps"].shape[-2]
            pred = module.net.cell_argmax(step_out).reshape(*batch["targets"].shape)  # (B, K, Hx, Wx)
            act_hits += int((action_out.argmax(-1)[:, 0] == batch["action"]).sum())
            for name, (j, col) in cells.items():
                t = batch["targets"][:, j, h - 1, col]
                known = t >= 0
                hits[name] += (pred[:, j, h - 1, col] == t)[known].tolist()
                targets[name] += t[known].tolist()
    table = {}
    for key, t in targets.items():
        majority = Counter(t).most_common(1)[0][1] / len(t)
        table[key] = (sum(hits[key]) / len(t), majority, len(t))
    return table, (act_hits / len(ds), len(ds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--game", default="breakout")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--train-episodes", type=int, default=32)
    ap.add_argument("--val-episodes", type=int, default=1)
    ap.add_argument("--data-dir", default=None, help="the data module's data_dir (default: its own)")
    ap.add_argument("--expert", type=yaml.safe_load, default=None,
                    help="the run's data.init_args.expert, e.g. '{score_bins: 2}'")
    args = ap.parse_args()
    kw = {} if args.data_dir is None else {"data_dir": args.data_dir}
    if args.expert:
        kw["expert"] = args.expert
    dm = MinAtarDataModule(game=args.game, n_train=args.train_episodes, n_val=args.val_episodes,
                           workers=1, **kw)
    dm.prepare_data()
    dm.setup()
    module = ProcedureCloner.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    table, (act, n) = probe(module, dm, args.split)
    print(f"{args.game} {args.split}: {n} records; action accuracy {act:.3f}")
    print("| cell | model | majority | cells |")
    print("|---|---|---|---|")
    for name, (acc, maj, cells) in table.items():
        print(f"| {name} | {acc:.3f} | {maj:.3f} | {cells} |")


if __name__ == "__main__":
    main()
