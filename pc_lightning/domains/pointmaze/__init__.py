"""PointMaze (gymnasium-robotics on MuJoCo) on the maze domain's layouts: the BFS procedure, continuous forces."""
