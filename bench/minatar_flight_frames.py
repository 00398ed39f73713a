"""How exactly does a flight-procedure model imagine the ball's flight? Teacher-forced and
generated accuracy of its imagined frames on held-out and shifted states, split into free
flight and strike frames, and of its decision block.

    python bench/minatar_flight_frames.py --ckpt runs/minatar_pc/version_0/checkpoints/best.ckpt

States: every ``--every``-th decision of the flight expert's episodes on the held-out seeds
(standard bricks) and on the heldout_shift seeds (``--shift``, default holes). A frame is right
when all its 100 cells are; teacher-forced, each block is predicted from the expert's previous
one; generated, the model's own chain from the state, compared at the same index.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from minatar import Environment

from pc_lightning.data.records import ProcedureDataset, ProcedureRecords, collate
from pc_lightning.data.datamodule import SEED_BASE
from pc_lightning.domains.minatar.env import make_env
from pc_lightning.domains.minatar.flight import BrickLayout, observe, plan
from pc_lightning.domains.minatar.flight_codec import FlightCodec
from pc_lightning.domains.minatar.flight_suite import block_kinds
from pc_lightning.model.module import ProcedureCloner


def expert_states(seeds: list[int], layout: BrickLayout | None, every: int, max_steps: int = 400
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """State blocks and the expert's procedures at every ``every``-th decision."""
    codec, scratch = FlightCodec(), Environment("breakout", sticky_action_prob=0.0)
    states, procs = [], []
    for seed in seeds:
        env = make_env("breakout", seed, 0.1, layout=layout)
        for t in range(max_steps):
            flight = plan(env, scratch)
            if t % every == 0:
                states.append(codec.encode_state(observe(env)))
                procs.append(codec.encode_procedure(flight))
            _, terminal = env.act(flight.action)
            if terminal:
                break
    return states, procs


def teacher_forced(module: ProcedureCloner, states, procs) -> list[np.ndarray]:
    """Per state, which blocks x_0 .. x_L the model predicts exactly from the expert's previous block."""
    longest = max(len(p) for p in procs)
    records = ProcedureRecords.from_lists(states, procs, [0] * len(states), list(range(len(states))))
    ds = ProcedureDataset(records, module.variant, longest + 1, 0, None, start_token=module.spec.start_token)
    out = []
    for lo in range(0, len(ds), 64):
        batch = collate([ds[i] for i in range(lo, min(lo + 64, len(ds)))])
        with torch.no_grad():
            _, step_logits, _ = module.net(batch["state"], batch["steps"], batch["step_valid"], batch["action_host"],
                                           batch.get("step_segment"))
        pred = step_logits.argmax(-1).reshape(batch["targets"].shape)
        target = batch["targets"]
        right = ((pred == target) | (target < 0)).flatten(2).all(-1)  # (B, K): block k predicts x_k
        for b in range(len(target)):
            n = len(procs[lo + b])
            out.append(right[b, :n].numpy())
    return out


def generated(module: ProcedureCloner, states, procs, codec: FlightCodec) -> list[np.ndarray]:
    """Per state, which blocks of the model's own chain equal the expert's at the same index."""
    out = []
    for lo in range(0, len(states), 64):
        s = torch.from_numpy(np.stack(states[lo : lo + 64])).long()
        gen = module.generate_procedure(s, codec.stop_fn, codec.max_blocks)
        steps, lengths = gen.steps.numpy(), gen.lengths.numpy()
        for b, proc in enumerate(procs[lo : lo + 64]):
            n = min(len(proc), int(lengths[b]))
            hits = np.zeros(len(proc), dtype=bool)
            hits[:n] = (steps[b, :n] == proc[:n]).reshape(n, -1).all(1)
            out.append(hits)
    return out


def summary(hits: list[np.ndarray], states, procs, codec: FlightCodec) -> dict[str, float]:
    k = np.concatenate([block_kinds(s, p, codec) for s, p in zip(states, procs)])
    h = np.concatenate(hits)
    names = {1: "free", 2: "strike", 3: "decision"}
    return {names[i]: float(h[k == i].mean()) if (k == i).any() else float("nan") for i in names} | {
        "whole": float(np.mean([x.all() for x in hits]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--every", type=int, default=10, help="take every N-th decision of an episode")
    p.add_argument("--shift", default="holes", help="heldout_shift's brick layout family")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    module = ProcedureCloner.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    codec = FlightCodec()
    print("| states | mode | free flight | strike | decision | whole procedure | states |")
    print("|---|---|---|---|---|---|---|")
    for name, base, layout in (("heldout", "heldout", None), (f"heldout_shift ({args.shift})", "heldout_shift",
                                                               BrickLayout.parse(args.shift))):
        seeds = [SEED_BASE[base] + i for i in range(args.episodes)]
        states, procs = expert_states(seeds, layout, args.every)
        for mode, hits in (("teacher-forced", teacher_forced(module, states, procs)),
                           ("generated", generated(module, states, procs, codec))):
            s = summary(hits, states, procs, codec)
            print(f"| {name} | {mode} | {s['free']:.3f} | {s['strike']:.3f} | {s['decision']:.3f} "
                  f"| {s['whole']:.3f} | {len(states)} |", flush=True)


if __name__ == "__main__":
    main()
