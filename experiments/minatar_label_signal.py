"""How much of the search expert's action an imitator can predict from the state (in distribution).

    python experiments/minatar_label_signal.py --game breakout [--episodes 64] [--expert '{simulations: 512}']

Trains the BC network of conf/minatar_bc.yaml with a plain loop on 80% of the expert's
training states (the data of MinAtarDataModule with these settings, generated if needed)
and prints, on the other 20%, the cross-entropy of the expert's actions against that of
their marginal (what a constant guess achieves) and the accuracy against the majority
action. As a control it does the same with a label the state decides: which side of the
paddle/player the ball/closest object is on (breakout only). A gap near zero for the
expert means its labels carry almost no information the state holds.
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import tokens_to_frame
from pc_lightning.model import ProcedureCloner


def fit_and_score(spec, cfg: dict, states: torch.Tensor, labels: torch.Tensor, steps: int, seed: int = 0) -> dict:
    """Train on a random 80%, score on the rest: test CE, marginal CE, accuracy, majority share."""
    torch.manual_seed(seed)
    model = ProcedureCloner(spec=spec, **cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.get("lr", 1e-3))
    idx = torch.randperm(len(states))
    cut = len(states) * 4 // 5
    train, test = idx[:cut], idx[cut:]
    for _ in range(steps):
        b = train[torch.randint(len(train), (32,))]
        loss = F.cross_entropy(model.net(states[b])[2], labels[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model.net(states[test])[2]
    freq = torch.bincount(labels[train], minlength=logits.shape[1]).float() + 1e-3
    marginal = -(freq / freq.sum()).log()[labels[test]].mean()
    return {"ce": float(F.cross_entropy(logits, labels[test])), "marginal_ce": float(marginal),
            "acc": float((logits.argmax(-1) == labels[test]).float().mean()),
            "majority": float(torch.bincount(labels[test]).max() / len(test))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--game", default="breakout")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--expert", type=yaml.safe_load, default=None, help="MCTS settings over the game's defaults")
    p.add_argument("--steps", type=int, default=600)
    a = p.parse_args()
    dm = MinAtarDataModule(game=a.game, n_train=a.episodes, expert=a.expert, variant="bc")
    dm.prepare_data()
    dm.setup()
    records = dm.records["train"]
    states = torch.as_tensor(np.asarray(records.states)).long()
    cfg = {**yaml.safe_load(open("conf/minatar.yaml"))["model"], "variant": "bc"}
    labels = {"expert": torch.as_tensor(np.asarray(records.actions)).long()}
    if a.game == "breakout":  # control: a label the state decides
        side = []
        for s in states:
            f = tokens_to_frame(s[:10].numpy(), 4)  # paddle, ball, trail, brick
            pad, ball = np.argwhere(f[..., 0]), np.argwhere(f[..., 1])
            side.append(0 if not len(pad) or not len(ball) else (1 if ball[0][1] < pad[:, 1].mean() else 3))
        labels["ball side (control)"] = torch.tensor(side)
    meta = records.meta
    print(f"{a.game}: {len(states)} states, expert return {meta['expert_return']:.2f} over {a.episodes} episodes, "
          f"expert {dm.expert}")
    for name, y in labels.items():
        r = fit_and_score(dm.spec, cfg, states, y, a.steps)
        print(f"  {name}: test cross-entropy {r['ce']:.3f} vs marginal {r['marginal_ce']:.3f}, "
              f"accuracy {r['acc']:.3f} vs majority {r['majority']:.3f}")


if __name__ == "__main__":
    main()
