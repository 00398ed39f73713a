"""The maze domain: tunnel mazes, the BFS expert, and its procedure (one map per BFS round)."""

from pc_lightning.domains.maze.datamodule import MazeDataModule

__all__ = ["MazeDataModule"]
