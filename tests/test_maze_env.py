import numpy as np
import pytest

from pc_lightning.domains.maze.env import MazeEnv, free_cells, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances


@pytest.mark.parametrize("size", [7, 10, 16, 31])
def test_maze_is_connected(size):
    for seed in range(5):
        walls = tunnel_maze(size, seed)
        start = tuple(free_cells(walls)[0])
        dist = bfs_distances(walls, start)
        assert (dist[~walls] >= 0).all(), "every free cell must be reachable"


def test_maze_lattice_and_corridor_width():
    size, k = 16, 5
    for seed in range(5):
        walls = tunnel_maze(size, seed)
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
        for i in range(k + 1):  # lattice corners stay walls
            for j in range(k + 1):
                assert walls[3 * i, 3 * j]
        for i in range(k):  # every room is 2x2 free
            for j in range(k):
                assert not walls[3 * i + 1 : 3 * i + 3, 3 * j + 1 : 3 * j + 3].any()
        # every opening in a wall line is a whole 2-cell segment: corridors are 2 wide
        for r in range(0, size, 3):
            for j in range(k):
                seg = walls[r, 3 * j + 1 : 3 * j + 3]
                assert seg.all() or not seg.any()


def test_maze_deterministic_per_seed_and_varied():
    assert (tunnel_maze(16, 3) == tunnel_maze(16, 3)).all()
    layouts = {tunnel_maze(16, s).tobytes() for s in range(20)}
    assert len(layouts) == 20


def test_shortcuts_add_loops():
    # a spanning tree on k*k rooms opens k*k-1 segments; shortcuts open more
    k = 10
    opened = []
    for p in (0.0, 0.5):
        walls = tunnel_maze(3 * k + 1, 0, shortcut_prob=p)
        n = sum(not walls[r, 3 * j + 1] for r in range(3, 3 * k, 3) for j in range(k))
        n += sum(not walls[3 * i + 1, c] for c in range(3, 3 * k, 3) for i in range(k))
        opened.append(n)
    assert opened[0] == k * k - 1
    assert opened[1] > opened[0]


@pytest.mark.parametrize("size", [8, 15, 4])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(ValueError, match="3k\\+1"):
        tunnel_maze(size, 0)


def test_env_moves_blocks_and_ends():
    walls = tunnel_maze(7, 0)
    goal, start = np.array([1, 1]), np.array([1, 2])
    env = MazeEnv(walls[None], goal[None], start[None], np.array([5]), np.array([1]))
    env.step(np.array([0]), np.array([0]))  # up into the border wall: stays
    assert (env.agents[0] == start).all() and not env.done[0]
    env.step(np.array([0]), np.array([2]))  # left onto the goal
    assert env.success[0] and env.done[0] and env.steps[0] == 2
    with pytest.raises(ValueError):
        env.step(np.array([0]), np.array([2]))
