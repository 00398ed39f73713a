"""How well each checkpoint's decision fits the expert's labels, on training and validation states.

    python experiments/minatar_decision_fit.py --game space_invaders \
        runs/ms2_pc_space_invaders_s0/version_0/checkpoints/last.ckpt \
        runs/ms_bc_space_invaders_s0/version_0/checkpoints/last.ckpt

The decision is what each variant acts on from a state: BC and Aux BC the action query at
the state block; PC the action cell a_0 of the x_0 it predicts from the state block (after
MinAtar item 7 PC plays exactly that action: it is carried unchanged to the last block,
whose query reads it). Both are restricted to the game's minimal action set. Per
checkpoint and split (up to ``--states`` states of conf/minatar.yaml's data for the game),
one line: the labels' cross-entropy under the model against the marginal's (a constant
guess at the training label frequencies), accuracy, the mean entropy of the model's
distribution, and how often each action is the argmax (what a greedy policy would play).
"""

import argparse
from collections import Counter

import torch
import torch.nn.functional as F

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.codec import H, W
from pc_lightning.domains.minatar.env import ACTION_NAMES, make_env
from pc_lightning.model import ProcedureCloner, act_from_state


@torch.no_grad()
def decision_logits(module: ProcedureCloner, states: torch.Tensor, action_ids: torch.Tensor,
                    action_base: int) -> torch.Tensor:
    """Logits (B, A') over the actions ``action_ids`` (MinAtar's full-set indices) that the
    variant decides by, for state tokens (B, H, W); ``action_base``: the codec's id of action 0."""
    net = module.net
    if module.variant.query_at_steps:
        raw = net(states, raw=True)[0][:, (H - 1) * W]  # the state block's raw output for a_0 (row 10, column 0)
        # log p(action) over the step vocabulary by the loss's own cell_nll (no 2**B-way table)
        return torch.stack([-net.cell_nll(raw, torch.full((len(raw),), action_base + int(a))) for a in action_ids], -1)
    return act_from_state(net, states)[:, action_ids]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+")
    p.add_argument("--game", default="breakout", help="the game the checkpoints were trained on")
    p.add_argument("--states", type=int, default=2000, help="at most this many states per split")
    a = p.parse_args()
    dm = MinAtarDataModule(game=a.game)
    dm.prepare_data()
    dm.setup()
    minimal = [int(x) for x in make_env(a.game, 0).minimal_action_set()]
    action_ids = torch.tensor(minimal)
    index = {act: i for i, act in enumerate(minimal)}
    train_labels = torch.tensor([index[int(x)] for x in dm.records["train"].actions])
    marginal = torch.bincount(train_labels, minlength=len(minimal)).float() / len(train_labels)
    for ckpt in a.ckpts:
        module = ProcedureCloner.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
        for split in ("train", "val"):
            records = dm.records[split]
            states = records.states.long()[: a.states]  # (B, H, W)
            labels = torch.tensor([index[int(x)] for x in records.actions[: a.states]])  # (B,)
            logp = F.log_softmax(decision_logits(module, states, action_ids, dm.codec.action_base).float(), -1)  # (B, A')
            ce = -logp.gather(1, labels[:, None]).mean().item()
            ce_marginal = -marginal.log()[labels].mean().item()
            greedy = logp.argmax(-1)
            entropy = -(logp.exp() * logp).sum(-1).mean().item()
            counts = Counter(ACTION_NAMES[minimal[i]] for i in greedy.tolist())
            print(f"{module.variant.name:6s} {split:5s} CE {ce:.3f} (marginal {ce_marginal:.3f}), "
                  f"acc {(greedy == labels).float().mean().item():.2f}, entropy {entropy:.3f}, "
                  f"greedy {dict(sorted(counts.items()))}  {ckpt}", flush=True)


if __name__ == "__main__":
    main()
