import numpy as np
import pytest

from pc_lightning.domains.maze.codec import AT_GOAL, BLOCKED, UNREACHED, action_token
from pc_lightning.domains.maze.env import ACTION_OFFSETS, free_cells, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_policy, bfs_procedure


def relaxation_distances(walls, goal):
    """Independent shortest paths: Bellman-Ford style relaxation over the whole grid."""
    inf = 10**9
    d = np.full(walls.shape, inf)
    d[tuple(goal)] = 0
    while True:
        p = np.pad(d, 1, constant_values=inf)
        nbr = np.minimum.reduce([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]) + 1
        new = np.where(walls, inf, np.minimum(d, nbr))
        if (new == d).all():
            return np.where(d >= inf, -1, d)
        d = new


@pytest.mark.parametrize("seed", range(4))
def test_bfs_distances_are_shortest_paths(seed):
    walls = tunnel_maze(16, seed)
    rng = np.random.default_rng(seed)
    cells = free_cells(walls)
    goal = cells[rng.integers(len(cells))]
    assert (bfs_distances(walls, goal) == relaxation_distances(walls, goal)).all()


@pytest.mark.parametrize("seed", range(4))
def test_bfs_policy_is_optimal_from_every_cell(seed):
    walls = tunnel_maze(13, seed)
    cells = free_cells(walls)
    goal = cells[seed]
    dist = relaxation_distances(walls, goal)
    policy = bfs_policy(bfs_distances(walls, goal))
    for cell in cells:
        pos, steps = cell.copy(), 0
        while (pos != goal).any():
            pos = pos + ACTION_OFFSETS[policy[tuple(pos)]]
            assert not walls[tuple(pos)]
            steps += 1
        assert steps == dist[tuple(cell)]


def test_procedure_rings_and_stop():
    walls = tunnel_maze(16, 1)
    cells = free_cells(walls)
    goal, agent = cells[0], cells[-1]
    x, a = bfs_procedure(walls, goal, agent)
    dist = relaxation_distances(walls, goal)
    assert len(x) == dist[tuple(agent)] + 1  # stops on the round that reaches the agent
    assert x[-1][tuple(agent)] == action_token(a)
    assert (x[:-1, agent[0], agent[1]] == UNREACHED).all()
    reached = (x != UNREACHED) & (x != BLOCKED)
    assert x[0][tuple(goal)] == AT_GOAL and reached[0].sum() == 1
    assert ((x == BLOCKED) == walls[None]).all()  # walls are drawn on every map
    for l in range(len(x)):  # map l holds exactly the cells within distance l
        assert (reached[l] == ((dist >= 0) & (dist <= l))).all()
        if l:
            kept = x[l - 1] != UNREACHED
            assert (x[l][kept] == x[l - 1][kept]).all()


def test_agent_at_goal_is_an_error():
    walls = tunnel_maze(7, 0)
    cell = free_cells(walls)[0]
    with pytest.raises(ValueError, match="goal"):
        bfs_procedure(walls, cell, cell)
