"""Learned policy vs the search expert that taught it: decisions per second on the same states.

    python bench/minatar_policy_speed.py --ckpt runs/minatar_pc/version_0/checkpoints/last.ckpt \
        --game breakout [--batch 512] [--repeats 8] [--threads 1] [--device cuda] [--expert-procs 16]

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

``--device cuda`` runs the policy on the GPU (the expert's search stays on the CPU: it
steps the simulator) and also reports how many of the batch's actions equal the CPU
policy's. ``--expert-procs N`` adds the expert on N cores at once: each of N processes
searches all the timed states, and their rates add up (the machine-for-machine ratio).
"""

import argparse
import statistics
import time
from multiprocessing import get_context
from pathlib import Path

import torch
from torch import Tensor
from omegaconf import OmegaConf

from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import make_env, restore, snapshot
from pc_lightning.domains.minatar.network import load_net
from pc_lightning.domains.minatar.search import GuidedSearch, SearchConfig
from pc_lightning.model import ProcedureCloner


def expert_snapshots(dm: MinAtarDataModule, actions: list[int]) -> tuple:
    """The validation episode replayed with the expert's actions: an environment, a planner
    and a snapshot (RNG included) before each of ``actions``."""
    game = dm.game
    env = make_env(game, dm.seeds("val", 1)[0], dm.sticky_action_prob, dm.difficulty_ramping)
    planner = GuidedSearch(SearchConfig(**dm.expert), env.minimal_action_set(), load_net(dm.net_path()).evaluate)
    snaps = []
    for a in actions:
        snaps.append(snapshot(env, with_rng=True))
        env.act(a)
    return env, planner, snaps


def _expert_rate(args: tuple) -> float:
    """One process's expert decisions/s over all the given states (its start-up excluded)."""
    game, actions = args
    torch.set_num_threads(1)
    dm = MinAtarDataModule(game=game, n_val=1)
    env, planner, snaps = expert_snapshots(dm, actions)
    start = time.perf_counter()
    for snap in snaps:
        restore(env, snap)
        planner.search(env)
    return len(snaps) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--game", default="breakout", help="the game the checkpoint was trained on")
    p.add_argument("--batch", type=int, default=512, help="states (environments) the policy decides at once")
    p.add_argument("--repeats", type=int, default=8, help="interleaved rounds")
    p.add_argument("--expert-states", type=int, default=64, help="states the expert is timed on")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="where the policy runs (cpu, cuda)")
    p.add_argument("--expert-procs", type=int, default=0, help="also time the expert on this many cores at once")
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
    dm = MinAtarDataModule(game=game, n_val=1)
    dm.prepare_data()
    dm.setup()
    records = dm.records["val"]
    n = len(records)
    states = records.states.long()
    batch = states.repeat(-(-a.batch // n), 1, 1)[: a.batch]  # (batch, H, W)
    max_steps = dm.codec.procedure_blocks(SearchConfig(**dm.expert).pv_depth)
    stop = dm.codec.stop_fn
    dev = torch.device(a.device)
    on_gpu = dev.type == "cuda"
    if on_gpu:
        cpu_actions, _ = module.act(batch, stop, max_steps)
        module.to(dev)
    batch = batch.to(dev)

    def policy_pass() -> Tensor:
        actions, _ = module.act(batch, stop, max_steps)
        if on_gpu:
            torch.cuda.synchronize(dev)
        return actions

    # the expert on the same states: replay its validation episode to each state and snapshot it there
    m = min(a.expert_states, n)
    expert_actions = [int(x) for x in records.actions[:m]]
    env, planner, snaps = expert_snapshots(dm, expert_actions)

    # interleaved: each round times one batched policy pass and the expert on the next
    # m / repeats states, so a slow spell on this shared machine slows both, not one
    policy_pass()  # warm-up (on a GPU: kernels and allocator)
    policy_times, expert_time = [], 0.0
    chunks = [range(i * m // a.repeats, (i + 1) * m // a.repeats) for i in range(a.repeats)]
    for chunk in chunks:
        start = time.perf_counter()
        actions = policy_pass()
        policy_times.append(time.perf_counter() - start)
        for i in chunk:
            restore(env, snaps[i])
            start = time.perf_counter()
            planner.search(env)
            expert_time += time.perf_counter() - start
    policy_dps = len(batch) / statistics.median(policy_times)
    expert_dps = m / expert_time
    where = (f"{torch.cuda.get_device_name(dev)}" if on_gpu else f"{torch.get_num_threads()} threads")
    print(f"{game} ({module.variant.name}): policy {policy_dps:.0f} decisions/s (batch {len(batch)} of {n} states, "
          f"{where}), search expert {expert_dps:.0f} decisions/s (1 process): "
          f"{policy_dps / expert_dps:.1f}x", flush=True)
    if on_gpu:
        same = (actions.cpu() == cpu_actions).float().mean().item()
        print(f"  actions equal to the CPU policy's: {same:.4f} of {len(batch)}", flush=True)
    if a.expert_procs:
        with get_context("spawn").Pool(a.expert_procs) as pool:
            # every process searches the same states at once; each times its own searches
            rates = pool.map(_expert_rate, [(game, expert_actions)] * a.expert_procs)
        all_dps = sum(rates)
        print(f"  search expert on {a.expert_procs} cores at once: {all_dps:.0f} decisions/s "
              f"(per process {min(rates):.0f}-{max(rates):.0f}): policy / all-core expert {policy_dps / all_dps:.1f}x",
              flush=True)


if __name__ == "__main__":
    main()
