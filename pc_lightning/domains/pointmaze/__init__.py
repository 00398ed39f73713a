"""PointMaze (gymnasium-robotics on MuJoCo) on the maze domain's layouts: the BFS procedure, continuous forces."""

from pc_lightning.domains.pointmaze.datamodule import PointMazeDataModule

__all__ = ["PointMazeDataModule"]
