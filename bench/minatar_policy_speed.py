"""Learned policy vs the MCTS expert that taught it: decisions per second on the same states.

    python bench/minatar_policy_speed.py --ckpt runs/minatar_pc/version_0/checkpoints/last.ckpt \
        --game breakout [--batch 512] [--repeats 8] [--root-block]

The states are the expert's own validation states (conf/minatar.yaml's data for the game).
The expert decides the first ``--expert-states`` of them one by one in one process; the
policy decides them in batches of ``--batch``, as a rollout over that many environments
would (where an episode has fewer states than a batch, they are repeated to fill it: a
repeated state costs the policy what a new one does, nothing is shared across the batch).
The two are timed in ``--repeats`` interleaved rounds (one policy pass, then the expert
on the next share of its states), so that a slow spell of this shared machine slows both;
the policy's time is the median pass, the expert's the total over its states. Prints
decisions/s of both and their ratio; ``--threads 1`` compares them core for core. Without
--ckpt a freshly initialised model of conf/minatar.yaml's size is timed; an untrained
model may not stop its procedure early, so prefer a checkpoint.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import make_env, restore, snapshot
from pc_lightning.domains.minatar.expert import MCTS, MCTSConfig
from pc_lightning.model import ProcedureCloner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--game", default="breakout", help="the game the checkpoint was trained on")
    p.add_argument("--batch", type=int, default=512, help="states (environments) the policy decides at once")
    p.add_argument("--repeats", type=int, default=8, help="interleaved rounds")
    p.add_argument("--expert-states", type=int, default=64, help="states the expert is timed on")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--root-block", action="store_true", help="the checkpoint was trained with data.init_args.root_block")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ckpt:
        module = ProcedureCloner.load_from_checkpoint(a.ckpt, map_location="cpu", weights_only=True)
    game = a.game
    if not a.ckpt:
        spec = MinAtarDataModule(game=game).spec
        model = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[1] / "conf/minatar.yaml").model)
        module = ProcedureCloner(spec=spec, **model)  # conf/minatar.yaml's model, untrained
    module.eval()
    dm = MinAtarDataModule(game=game, n_val_episodes=1, root_block=a.root_block)
    dm.prepare_data()
    dm.setup()
    records = dm.records["val"]
    n = len(records)
    states = records.states.long()
    batch = states.repeat(-(-a.batch // n), 1, 1)[: a.batch]  # (batch, H, W)
    max_steps = dm.codec.procedure_blocks(MCTSConfig(**dm.expert).pv_depth)
    stop = dm.codec.stop_fn

    # the expert on the same states: replay its validation episode to each state and snapshot it there
    env = make_env(game, dm.episode_seeds("val", 1)[0], dm.sticky_action_prob, dm.difficulty_ramping)
    planner = MCTS(MCTSConfig(**dm.expert), env.minimal_action_set(), seed=0, game=game)
    m = min(a.expert_states, n)
    snaps = []
    for i in range(m):
        snaps.append(snapshot(env, with_rng=True))
        env.act(int(records.actions[i]))

    # interleaved: each round times one batched policy pass and the expert on the next
    # m / repeats states, so a slow spell on this shared machine slows both, not one
    module.act(batch[:8], stop, max_steps)  # warm-up
    policy_times, expert_time = [], 0.0
    chunks = [range(i * m // a.repeats, (i + 1) * m // a.repeats) for i in range(a.repeats)]
    for chunk in chunks:
        start = time.perf_counter()
        module.act(batch, stop, max_steps)
        policy_times.append(time.perf_counter() - start)
        for i in chunk:
            restore(env, snaps[i])
            start = time.perf_counter()
            planner.search(env)
            expert_time += time.perf_counter() - start
    policy_dps = len(batch) / statistics.median(policy_times)
    expert_dps = m / expert_time
    print(f"{game} ({module.variant}): policy {policy_dps:.0f} decisions/s (batch {len(batch)} of {n} states, "
          f"{torch.get_num_threads()} threads), MCTS expert {expert_dps:.0f} decisions/s (1 process): "
          f"{policy_dps / expert_dps:.1f}x")


if __name__ == "__main__":
    main()
