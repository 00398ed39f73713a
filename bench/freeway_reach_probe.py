"""Freeway falsification (issue 29, item 5): a network-free reachability expert on the
simulator, a check that its plans are exact, and whether a reactive clone of it falls on a
traffic shift (more cars per lane) before the procedure is built.

The expert copies the game, parks the chicken on row 9 (no car there) and steps the copy
to read every car's cell over the next 64 frames (cars move alike whatever the chicken
does, and the game draws no random number before a crossing); then a flood over (time, row,
cooldown) finds the earliest step on row 0 that no car hits, and the first action of a path
there. The clones (an MLP and a CNN) see the frame plus what it hides, for every learner
alike: each car's timer and the chicken's cooldown, one-hot at their cells.

    python bench/freeway_reach_probe.py --episodes 128      # about 7 min on one core

MinAtar 1.0.15 is used through its Environment (a dependency); none of its code is copied.
"""


from __future__ import annotations

import time

import numpy as np
import torch
from minatar import Environment
from torch import nn

from pc_lightning.domains.minatar.env import make_env, restore, snapshot

NOOP, UP, DOWN = 0, 2, 4
H = 64  # imagined frames
CHICKEN_COL = 4


def car_future(env: Environment, scratch: Environment, horizon: int = H) -> np.ndarray:
    """Car cells (x, y) at t = 0..horizon, (horizon+1, n_cars, 2): the simulator stepped with the
    chicken parked on row 9 (no car there); cars move alike whatever the chicken does."""
    restore(scratch, snapshot(env))
    g = scratch.env
    g.pos, g.move_timer, g.terminate_timer, g.terminal = 9, 10**9, 10**9, False
    out = np.zeros((horizon + 1, len(g.cars), 2), dtype=np.int64)
    out[0] = [c[:2] for c in g.cars]
    for t in range(horizon):
        g.move_timer = 10**9
        scratch.act(NOOP)
        out[t + 1] = [c[:2] for c in g.cars]
    return out


def plan(env: Environment, scratch: Environment) -> tuple[int, int, np.ndarray]:
    """The earliest arrival on row 0 over (time, row, cooldown) reachable without a hit, and
    the first action of a path that gets there: (action, arrival step or -1, reach map
    (H+1, 10) bool of rows reachable at each t)."""
    g = env.env
    cars = car_future(env, scratch)
    hit = np.zeros((H, 10), dtype=bool)  # a chicken on row r during step t is hit
    for t in range(H):
        for (x0, y0), (x1, _) in zip(cars[t], cars[t + 1]):
            if x0 == CHICKEN_COL or x1 == CHICKEN_COL:
                hit[t, y0] = True
    # state (row, cooldown 0..3) -> first action, -1 unreachable
    first = np.full((10, 4), -1)
    first[g.pos, min(g.move_timer, 3)] = -2  # the start: no first action yet
    reach = np.zeros((H + 1, 10), dtype=bool)
    reach[0, g.pos] = True
    for t in range(H):
        nxt = np.full((10, 4), -1)
        for row in range(10):
            for mt in range(4):
                f = first[row, mt]
                if f == -1:
                    continue
                for a in (UP, NOOP, DOWN):
                    r, m = row, mt
                    if a == UP and m == 0:
                        r, m = max(0, r - 1), 3
                    elif a == DOWN and m == 0:
                        r, m = min(9, r + 1), 3
                    fa = a if f == -2 else f
                    if r == 0:
                        return fa, t, reach
                    if hit[t, r]:
                        continue
                    m = max(0, m - 1)
                    if nxt[r, m] == -1:
                        nxt[r, m] = fa
        first = nxt
        reach[t + 1] = (first != -1).any(1)
    return NOOP, -1, reach


def observe(env: Environment) -> np.ndarray:
    """The frame (10, 10, 7) plus what it hides, for every learner alike: each car's timer
    one-hot (6 channels, at the car's cell) and the chicken's cooldown (4, at its cell)."""
    g = env.env
    obs = np.zeros((10, 10, 17), dtype=bool)
    obs[..., :7] = env.state()
    for x, y, timer, _ in g.cars:
        obs[y, x, 7 + min(timer, 5)] = True
    obs[g.pos, CHICKEN_COL, 13 + min(g.move_timer, 3)] = True
    return obs


def add_traffic(env: Environment, seed: int, per_lane: int) -> None:
    """The shift: ``per_lane`` cars in every lane, the extra ones spaced evenly and moving as
    the lane's first car (same speed and direction, the timer drawn from ``seed``)."""
    g = env.env
    rng = np.random.default_rng([seed, 29])
    base = [list(c) for c in g.cars[:8]]
    for k in range(1, per_lane):
        for c in base:
            g.cars.append([(c[0] + k * 10 // per_lane) % 10, c[1], int(rng.integers(0, abs(c[3]) + 1)), c[3]])


def play(seed: int, policy, sticky: float = 0.1, per_lane: int = 1, steps: int = 400, record=None) -> float:
    env = make_env("freeway", seed, sticky)
    if per_lane > 1:
        add_traffic(env, seed, per_lane)
    scratch = Environment("freeway", sticky_action_prob=0.0)
    ret = 0.0
    for _ in range(steps):
        a = policy(env, scratch)
        if record is not None:
            record.append((observe(env), a))
        r, term = env.act(a)
        ret += r
        if term:
            break
    return ret


def expert(env, scratch):
    return plan(env, scratch)[0]


def check_exact(seeds=range(8)) -> None:
    """Following the plan without sticky actions, the chicken reaches row 0 at the step the
    plan says (no car hits it on the way), from the start of every crossing."""
    ok = n = 0
    for s in seeds:
        env = make_env("freeway", 5_000_000 + s, 0.0)
        scratch = Environment("freeway", sticky_action_prob=0.0)
        for _ in range(6):  # six crossings
            a, arrival, _ = plan(env, scratch)
            steps = 0
            while True:
                r, _ = env.act(a)
                if r:
                    break
                steps += 1
                a = plan(env, scratch)[0]
            n += 1
            ok += steps == arrival
    print(f"exact arrivals: {ok}/{n}")



ACTIONS = [NOOP, UP, DOWN]


def collect(n: int):
    rec = []
    t = time.time()
    for s in range(n):
        play(s, expert, record=rec)
    x = np.stack([o for o, _ in rec]).transpose(0, 3, 1, 2).astype(np.float32)  # (N, C, 10, 10)
    y = np.array([ACTIONS.index(a) for _, a in rec])
    print(f"{n} episodes, {len(y)} states, {time.time() - t:.0f} s; action freq {np.bincount(y, minlength=3) / len(y)}")
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(1700, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3))


def cnn():
    return nn.Sequential(nn.Conv2d(17, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6400, 256), nn.ReLU(), nn.Linear(256, 3))


def train(net, x, y, epochs=15):
    g = torch.Generator().manual_seed(0)
    n_val = len(y) // 10
    perm = torch.randperm(len(y), generator=g)
    va, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for ep in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 256):
            b = order[i : i + 256]
            loss = nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc_tr = (net(x[tr[:5000]]).argmax(1) == y[tr[:5000]]).float().mean().item()
        acc_va = (net(x[va]).argmax(1) == y[va]).float().mean().item()
    return acc_tr, acc_va


def policy_of(net):
    def act(env, scratch):
        with torch.no_grad():
            o = torch.from_numpy(observe(env).transpose(2, 0, 1)[None].astype(np.float32))
            return ACTIONS[int(net(o).argmax())]
    return act


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=128, help="expert episodes to clone (400 decisions each)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    check_exact()
    torch.manual_seed(0)
    x, y = collect(args.episodes)
    suites = {"heldout (standard)": (2_000_000, 1), "2 cars/lane": (3_000_000, 2), "3 cars/lane": (3_000_000, 3)}
    exp = {k: [play(b + s, expert, per_lane=p) for s in range(16)] for k, (b, p) in suites.items()}
    for k, v in exp.items():
        print(f"expert {k}: {np.mean(v):.2f}")
    for name, make in (("MLP", mlp), ("CNN", cnn)):
        net = make()
        t = time.time()
        acc = train(net, x, y)
        print(f"{name}: train acc {acc[0]:.3f}, val acc {acc[1]:.3f} ({time.time() - t:.0f} s)")
        pol = policy_of(net.eval())
        for k, (b, p) in suites.items():
            r = [play(b + s, pol, per_lane=p) for s in range(16)]
            print(f"  {k}: {np.mean(r):.2f} vs expert {np.mean(exp[k]):.2f} -> {np.mean(r) / np.mean(exp[k]):.2f}")
