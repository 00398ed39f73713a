"""Expert data generation speed: BFS states with procedures per second.

    python bench/data_generation.py [--mazes 40] [--size 16] [--workers 2]
"""

import argparse
import tempfile
import time

from pc_lightning.domains.maze import MazeDataModule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mazes", type=int, default=40)
    p.add_argument("--trajectories", type=int, default=4)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dm = MazeDataModule(size=a.size, n_train=a.mazes, train_episodes=a.trajectories,
                            workers=a.workers, data_dir=tmp)
        start = time.perf_counter()
        records = dm.generate("train")
        seconds = time.perf_counter() - start
    print(f"maze expert data: {len(records) / seconds:.0f} states/s ({len(records)} states, "
          f"{len(records.steps)} maps, {a.mazes} mazes {a.size}x{a.size}, {a.workers} workers, {seconds:.2f} s)")


if __name__ == "__main__":
    main()
