import numpy as np
import torch

from pc_lightning.domains.maze import codec
from pc_lightning.domains.maze.env import ACTION_OFFSETS, free_cells, tunnel_maze
from pc_lightning.domains.maze.expert import bfs_distances, bfs_procedure


def test_state_tokens_round_trip():
    walls = tunnel_maze(16, 0)[None].repeat(3, 0)
    cells = free_cells(walls[0])
    goals, agents = cells[[0, 5, 9]], cells[[20, 30, 40]]
    tokens = codec.encode_states(walls, goals, agents)
    assert tokens.dtype == np.uint8 and tokens.shape == (3, 16, 16)
    for e in range(3):
        assert (np.argwhere(tokens[e] == codec.GOAL)[0] == goals[e]).all()
        assert (np.argwhere(tokens[e] == codec.AGENT)[0] == agents[e]).all()
        assert ((tokens[e] == codec.WALL) == walls[e]).all()


def test_stop_rule():
    walls = tunnel_maze(10, 2)
    cells = free_cells(walls)
    goal, agent = cells[0], cells[-1]
    x, _ = bfs_procedure(walls, goal, agent)
    state = torch.from_numpy(codec.encode_states(walls[None], goal[None], agent[None])).long()
    flags = [bool(codec.reached_agent(state, torch.from_numpy(m[None]).long())) for m in x]
    assert flags == [False] * (len(x) - 1) + [True]


def test_augmentation_commutes_with_the_expert():
    """Rotating/reflecting a maze and remapping actions gives the expert's procedure on the new maze."""
    walls = tunnel_maze(13, 4)
    cells = free_cells(walls)
    goal, agent = cells[3], cells[-2]
    x, a = bfs_procedure(walls, goal, agent)
    state = codec.encode_states(walls[None], goal[None], agent[None])[0]
    for seed in range(16):
        s2, x2, a2 = codec.dihedral_augment(state, x, a, np.random.default_rng(seed))
        w2 = s2 == codec.WALL
        g2, ag2 = np.argwhere(s2 == codec.GOAL)[0], np.argwhere(s2 == codec.AGENT)[0]
        ref_x, ref_a = bfs_procedure(w2, g2, ag2)
        assert len(ref_x) == len(x2)
        # tie-breaking among equally short moves may differ, reachability and optimality may not
        assert ((ref_x == codec.UNREACHED) == (x2 == codec.UNREACHED)).all()
        assert ((ref_x == codec.BLOCKED) == (x2 == codec.BLOCKED)).all()
        nxt = ag2 + np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])[a2]
        assert not w2[tuple(nxt)] and (x2[-2][tuple(nxt)] != codec.UNREACHED)

        # ... so the augmented maps equal the new maze's expert maps up to ties, and only so
        assert codec.maps_match_up_to_ties(ref_x, x2).all()


def test_maps_match_up_to_ties_accepts_only_equally_short_moves():
    walls = tunnel_maze(16, 1)
    cells = free_cells(walls)
    goal, agent = cells[0], cells[-1]
    x, _ = bfs_procedure(walls, goal, agent)
    dist = bfs_distances(walls, goal)
    last = x[-1]
    offsets = ACTION_OFFSETS
    ties, wrong = [], []  # (cell, other action): another shortest move / a move that is not
    for r, c in np.argwhere((last >= 2) & (last < codec.BLOCKED)):
        for a, (dr, dc) in enumerate(offsets):
            if a == last[r, c] - 2 or not (0 <= r + dr < 16 and 0 <= c + dc < 16):
                continue
            nbr = dist[r + dr, c + dc]
            (ties if nbr == dist[r, c] - 1 else wrong).append(((r, c), a))
    assert ties and wrong  # the maze has both kinds of cell
    assert codec.maps_match_up_to_ties(x, x).all()
    for (cell, a), expected in [(ties[0], True), (wrong[0], False)]:
        changed = x.copy()
        changed[-1][cell] = codec.action_token(a)
        assert codec.maps_match_up_to_ties(x, changed).tolist() == [True] * (len(x) - 1) + [expected]
    unreached = x.copy()
    unreached[-1][tuple(np.argwhere(last == codec.AT_GOAL)[0])] = codec.UNREACHED
    assert not codec.maps_match_up_to_ties(x, unreached)[-1]


def test_render_shape():
    walls = tunnel_maze(10, 0)
    cells = free_cells(walls)
    x, _ = bfs_procedure(walls, cells[0], cells[-1])
    state = codec.encode_states(walls[None], cells[:1], cells[-1:])[0]
    img = codec.render_procedures(state, x, x[:3])
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and img.shape[1] > 2 * 10 * 6
