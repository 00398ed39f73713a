"""PointMaze (gymnasium-robotics on MuJoCo) on the maze's layouts: coordinates, determinism,
and the BFS + PD expert, which must reach the goal on training and held-out layouts."""

import numpy as np
import pytest

from pc_lightning.domains.maze.expert import bfs_distances
from pc_lightning.domains.pointmaze.codec import BALL, GOAL, WALL, BallBins, encode_state, quantise
from pc_lightning.domains.pointmaze.env import PointMazeEpisode, cell_centre, cell_of, layout
from pc_lightning.domains.pointmaze.expert import PointMazeExpert, force_bins, play_expert


def test_cell_coordinates_are_gymnasium_robotics():
    walls = layout(10, 3)
    ep = PointMazeEpisode(walls, episode_seed=0, max_decisions=5)
    maze = ep.env.unwrapped.maze
    for r in range(10):
        for c in range(10):
            centre = cell_centre(np.array([r, c]), walls.shape)
            assert np.allclose(centre, maze.cell_rowcol_to_xy(np.array([r, c])))
            for off in ([0.49, 0.49], [-0.49, 0.2], [0.0, -0.49]):
                assert tuple(cell_of(centre + off, walls.shape)) == (r, c)
    obs = ep.observe()
    assert tuple(obs["cell"]) == tuple(ep.start_cell) and tuple(maze.cell_xy_to_rowcol(obs["goal"])) == tuple(ep.goal_cell)
    assert not walls[tuple(ep.start_cell)] and not walls[tuple(ep.goal_cell)]


def test_an_episode_is_deterministic_per_seed():
    walls = layout(10, 1)

    def trajectory(seed):
        ep = PointMazeEpisode(walls, episode_seed=seed, max_decisions=30)
        run = play_expert(ep)
        return np.array([o["pos"] for o in run["observations"]]), run["decisions"]

    a, b, c = trajectory(5), trajectory(5), trajectory(6)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("seed_base", [0, 2_000_000])  # training layouts, held-out layouts
def test_the_expert_reaches_the_goal(seed_base):
    solved, within = [], []
    for i in range(12):
        walls = layout(10, seed_base + i // 2)
        ep = PointMazeEpisode(walls, episode_seed=seed_base + i, max_decisions=200)
        distance = int(bfs_distances(walls, ep.goal_cell)[tuple(ep.start_cell)])
        run = play_expert(ep)
        solved.append(run["success"])
        within.append(run["decisions"] <= 4 * distance + 10)
    assert np.mean(solved) >= 0.95 and all(within)


def test_the_force_is_read_from_the_last_bfs_map_and_executed_at_bin_centres():
    walls = layout(10, 4)
    ep = PointMazeEpisode(walls, episode_seed=4, max_decisions=50)
    expert = PointMazeExpert(walls, ep.goal_cell)
    obs = ep.observe()
    d = expert.decide(obs)
    distance = int(expert.dist[tuple(obs["cell"])])
    assert d.procedure.shape == (distance + 1, 10, 10)  # one map per BFS round, until the ball's cell
    bins = force_bins()
    assert np.allclose(d.force, bins.decode(d.bins)) and (np.abs(d.force) <= 1).all()
    q = quantise(obs, walls.shape)  # the expert decides on the ball as the tokens show it
    raw = np.clip(expert.kp * (expert.target(q["cell"], q["goal"]) - q["pos"]) - expert.kd * q["vel"], -1, 1)
    assert (np.abs(d.force - raw) <= bins.max_error + 1e-12).all()  # binning costs at most half a bin
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 2))
    assert (np.abs(bins.decode(bins.encode(x)) - x) <= bins.max_error + 1e-12).all()


def test_the_ball_token_round_trips_and_the_expert_decides_on_tokens_alone():
    ball = BallBins()
    assert ball.state_vocab == BALL + 2 * 9 * 25
    seen = set()
    for sr in range(3):
        for sc in range(3):
            for vx in range(5):
                for vy in range(5):
                    for on_goal in (False, True):
                        t = ball.token(np.array([sr, sc]), np.array([vx, vy]), on_goal)
                        sub, vb, g = ball.untoken(t)
                        assert (tuple(sub), tuple(vb), g) == ((sr, sc), (vx, vy), on_goal)
                        seen.add(t)
    assert seen == set(range(BALL, ball.state_vocab))
    walls = layout(10, 2)
    ep = PointMazeEpisode(walls, episode_seed=2, max_decisions=40)
    expert = PointMazeExpert(walls, ep.goal_cell)
    rng = np.random.default_rng(0)
    while not ep.done:
        obs = ep.observe()
        tokens = encode_state(walls, ep.goal_cell, obs["pos"], obs["vel"])
        assert (tokens == WALL).sum() == walls.sum() and (tokens >= BALL).sum() == 1
        assert tokens[tuple(ep.goal_cell)] == GOAL or tuple(obs["cell"]) == tuple(ep.goal_cell)
        q = quantise(obs, walls.shape)
        assert (np.abs(q["pos"] - obs["pos"]) <= 0.5 / ball.sub + 1e-9).all()  # half a sub-cell
        # another observation with the same tokens (moved within its bins) gets the same force
        jitter = {**obs, "pos": q["pos"] + rng.uniform(-0.49, 0.49, 2) / ball.sub,
                  "vel": np.clip(q["vel"] + rng.uniform(-0.99, 0.99, 2), -4.99, 4.99)}
        assert np.array_equal(encode_state(walls, ep.goal_cell, jitter["pos"], jitter["vel"]), tokens)
        assert np.array_equal(expert.decide(jitter, False).bins, expert.decide(obs, False).bins)
        ep.step(expert.decide(obs, False).force)
    assert ep.success
