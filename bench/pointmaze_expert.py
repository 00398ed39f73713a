"""The PointMaze expert (BFS route + PD control, binned forces) on the seed ranges of each split:
success rate, decisions per BFS cell, and decisions/s.

    python bench/pointmaze_expert.py [--size 16] [--layouts 20] [--episodes 5] [--bins 5] [--repeat 8]

Layouts ``SEED_BASE[split] + i`` (the maze domain's tunnel mazes), ``--episodes`` goal/start
pairs each; an episode may take ``4 * distance + size`` decisions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pc_lightning.data.datamodule import SEED_BASE
from pc_lightning.domains.maze.expert import bfs_distances
from pc_lightning.domains.pointmaze.env import PointMazeEpisode, layout
from pc_lightning.domains.pointmaze.expert import PointMazeExpert, force_bins, play_expert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--layouts", type=int, default=20)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--bins", type=int, default=5)
    p.add_argument("--repeat", type=int, default=8)
    p.add_argument("--splits", default="train,val,heldout")
    a = p.parse_args()
    for split in a.splits.split(","):
        t0, solved, ratio, decisions = time.perf_counter(), [], [], 0
        for i in range(a.layouts):
            walls = layout(a.size, SEED_BASE[split] + i)
            for e in range(a.episodes):
                seed = SEED_BASE[split] + i * 1000 + e
                probe = PointMazeEpisode(walls, seed, max_decisions=1)
                distance = int(bfs_distances(walls, probe.goal_cell)[tuple(probe.start_cell)])
                probe.close()
                ep = PointMazeEpisode(walls, seed, max_decisions=4 * distance + a.size, repeat=a.repeat)
                run = play_expert(ep, PointMazeExpert(walls, ep.goal_cell, bins=force_bins(a.bins)))
                solved.append(run["success"])
                decisions += run["decisions"]
                if run["success"]:
                    ratio.append(run["decisions"] / max(1, distance))
        s = time.perf_counter() - t0
        print(f"{split:8s} {a.size}x{a.size}: success {np.mean(solved):.3f} ({sum(solved)}/{len(solved)}), "
              f"decisions per BFS cell {np.mean(ratio):.2f}, {decisions / s:.0f} decisions/s "
              f"(bins {a.bins}, repeat {a.repeat}, {s:.1f} s)")


if __name__ == "__main__":
    main()
