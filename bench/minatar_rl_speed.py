"""PPO throughput on MinAtar: the project's compact vectorised PPO against stable-baselines3's.

    python bench/minatar_rl_speed.py [--game breakout] [--steps 300000] [--threads 2]

Both train the same network (a 16-filter 3x3 convolution, a 128-unit dense layer, policy and
value heads on a shared torso) with the same rollout (16 environments x 128 steps), the same
minibatch (512) and epochs (4), sticky actions 0.1, on this machine in one run, so the ratio is
meaningful even where the machine is busy. One line each: environment steps per second and
the mean return of the last 100 training episodes. stable-baselines3 needs
``pip install stable-baselines3 gymnasium``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def compact(game: str, steps: int) -> tuple[float, float]:
    from pc_lightning.domains.minatar.network import NetConfig, load_net, train_net

    cfg = NetConfig(total_steps=steps, n_envs=16, n_steps=128, minibatches=4, epochs=4)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "net.pt"
        start = time.perf_counter()
        train_net(game, cfg, path, progress=False)
        dt = time.perf_counter() - start
        meta = load_net(path).meta
    return meta["steps"] / dt, meta["final_return"] or float("nan")


def sb3(game: str, steps: int) -> tuple[float, float]:
    import gymnasium as gym
    from minatar.gym import register_envs
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    register_envs()
    ids = {"asterix": "Asterix", "breakout": "Breakout", "freeway": "Freeway", "seaquest": "Seaquest",
           "space_invaders": "SpaceInvaders"}

    class Torso(BaseFeaturesExtractor):  # the same torso as PolicyValueNet's (an MLP on the flat frame)
        def __init__(self, space: gym.spaces.Box) -> None:
            super().__init__(space, 256)
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(space.shape)), 256), nn.ReLU(),
                                     nn.Linear(256, 256), nn.ReLU())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.net(obs.permute(0, 3, 1, 2))

    env = make_vec_env(lambda: gym.make(f"MinAtar/{ids[game]}-v1"), n_envs=16, seed=0)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=512, n_epochs=4, learning_rate=5e-4, ent_coef=0.01,
                policy_kwargs=dict(features_extractor_class=Torso, net_arch=dict(pi=[], vf=[])), verbose=0, seed=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    dt = time.perf_counter() - start
    rets = [e["r"] for e in model.ep_info_buffer]
    return model.num_timesteps / dt, float(np.mean(rets)) if rets else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="breakout")
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name, fn in (("compact PPO (pc_lightning)", compact), ("stable-baselines3 PPO", sb3)):
        try:
            sps, ret = fn(a.game, a.steps)
        except ImportError as e:
            print(f"{name:28s} skipped: {e.name} is not installed")
            continue
        print(f"{name:28s} {a.game}: {sps:8.0f} env steps/s, last-100-episode return {ret:.2f} "
              f"({a.steps} steps, {a.threads} threads)")


if __name__ == "__main__":
    main()
