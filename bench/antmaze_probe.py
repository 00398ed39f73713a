"""AntMaze probe (issue 31 item 6): can SAC (stable-baselines3) learn, within a CPU budget, to walk
gymnasium-robotics' ant to an adjacent cell's centre (an open 3x3 room, dense reward)? Success as
gymnasium-robotics counts it (within 0.45), on 20 episodes after training.

    pip install stable-baselines3   # not a project dependency
    python bench/antmaze_probe.py 22    # minutes of training (checked every 5,000 env steps)
"""
import contextlib
import io
import sys
import time

import gymnasium as gym
import numpy as np
import torch
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics
gym.register_envs(gymnasium_robotics)
from stable_baselines3 import SAC

M = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
ADJ = [np.array([1, 2]), np.array([3, 2]), np.array([2, 1]), np.array([2, 3])]

class Adjacent(gym.Wrapper):
    def __init__(self, env, seed):
        super().__init__(env); self.rng = np.random.default_rng(seed)
    def reset(self, **kw):
        g = ADJ[self.rng.integers(4)]
        return self.env.reset(options={"goal_cell": g, "reset_cell": np.array([2, 2])}, **kw)

def make(seed):
    env = gym.make("AntMaze_UMazeDense-v5", maze_map=M, continuing_task=False, max_episode_steps=300)
    return Adjacent(env, seed)

if __name__ == "__main__":
    torch.set_num_threads(1)
    minutes = float(sys.argv[1])
    env = make(0)
    model = SAC("MultiInputPolicy", env, seed=0, verbose=0, learning_starts=5000, batch_size=256)
    t0 = time.time(); steps = 0
    while time.time() - t0 < minutes * 60:
        model.learn(5000, reset_num_timesteps=False); steps += 5000
        print(f"{(time.time()-t0)/60:.1f} min, {steps} steps", flush=True)
    ev = make(123); succ = []
    for e in range(20):
        obs, _ = ev.reset(seed=1000 + e); done = False; ok = False
        while not done:
            a, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, info = ev.step(a); done = term or trunc; ok = ok or bool(info.get("success"))
        succ.append(ok)
    print(f"after {steps} env steps ({(time.time()-t0)/60:.1f} min incl. eval): success {np.mean(succ):.2f} on 20 episodes", flush=True)
