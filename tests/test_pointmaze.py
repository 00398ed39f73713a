"""PointMaze (gymnasium-robotics on MuJoCo) on the maze's layouts: coordinates, determinism,
and the BFS + PD expert, which must reach the goal on training and held-out layouts."""

import numpy as np
import pytest
import torch

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


# ------------------------------------------------------------------ data, suites, augmentation, CLI
from pc_lightning.domains.maze.codec import AT_GOAL, dihedral  # noqa: E402
from pc_lightning.domains.pointmaze import PointMazeDataModule  # noqa: E402
from pc_lightning.domains.pointmaze.codec import FREE, DihedralAugment, reached_ball, token_spec  # noqa: E402
from pc_lightning.domains.pointmaze.suite import episode_seed as episode_seed_of, expert_episode  # noqa: E402
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig  # noqa: E402

#: Overrides that shrink conf/pointmaze*.yaml to a seconds-long run on 7x7 layouts.
TINY_POINTMAZE = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.log_every_n_steps", "1", "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.size", "7", "--data.init_args.n_train", "2", "--data.init_args.train_episodes", "1",
    "--data.init_args.n_val", "1", "--data.init_args.val_episodes", "1",
    "--data.init_args.n_val_envs", "2", "--data.init_args.val_envs_episodes", "1",
    "--data.init_args.n_heldout", "2", "--data.init_args.heldout_episodes", "1",
    "--data.init_args.train_envs_episodes", "1", "--data.init_args.batch_size", "4",
]


def test_the_steps_see_the_ball_as_free_or_as_the_goal_and_stop_at_its_cell():
    """Every decision of an episode has one context, so a rollout reuses its procedure; in the
    goal cell the context still shows the goal, and the procedure is x_0 alone."""
    ball = BallBins()
    spec = token_spec(ball, force_bins())
    net = ProcedureTransformer(TransformerConfig(spec.state_vocab, spec.step_vocab, spec.action_vocab,
                                                 hidden_from_steps=tuple(spec.hidden_from_steps),
                                                 hidden_as=tuple(spec.hidden_as)))
    walls = layout(10, 6)
    run = expert_episode(walls, 600, ball, 5, 8)
    assert run["success"]
    states = torch.as_tensor(np.stack(run["states"])).long()
    contexts = net.step_context(states)
    assert (contexts == contexts[0]).all()  # the ball is hidden, the goal shown wherever the ball is
    assert (contexts < BALL).all() and (contexts == GOAL).flatten(1).sum(1).eq(1).all()
    for s, x in zip(states, run["procedures"]):
        x = torch.as_tensor(x).long()
        stops = reached_ball(s[None].expand(len(x), -1, -1), x)
        assert stops[-1] and not stops[:-1].any()  # the stop rule ends the expert's procedure
    in_goal = [x for s, x in zip(run["states"], run["procedures"]) if (s == GOAL).sum() == 0]
    assert in_goal and all(len(x) == 1 and (x[0] == AT_GOAL).sum() == 1 for x in in_goal)


def _turn(t: int) -> np.ndarray:
    """The 2x2 matrix that dihedral transform t applies to (x, y) vectors (the layout's centre is the origin)."""
    g = np.zeros((3, 3))
    cols = []
    for v in ((1, 0), (0, 1)):
        g[:] = 0
        g[1 - v[1], 1 + v[0]] = 1  # row falls with y, column rises with x
        r, c = np.argwhere(dihedral(g, t) == 1)[0]
        cols.append((c - 1, 1 - r))
    return np.array(cols, dtype=np.float64).T


def test_augmentation_is_the_expert_on_the_turned_layout():
    """A turned state's tokens are the turned layout's, and its force is what the expert does
    there (where the ball's cell has one shortest move: BFS ties are broken in a fixed order)."""
    walls = layout(10, 8)
    ball = BallBins()
    aug = DihedralAugment(ball, 5)
    ep = PointMazeEpisode(walls, episode_seed=800, max_decisions=60)
    expert = PointMazeExpert(walls, ep.goal_cell)
    compared = 0
    for t in range(8):
        turned_walls = dihedral(walls, t)
        goal2 = cell_of(_turn(t) @ cell_centre(ep.goal_cell, walls.shape), walls.shape)
        expert2 = PointMazeExpert(turned_walls, goal2)
        ep2 = PointMazeEpisode(walls, episode_seed=800, max_decisions=25)
        while not ep2.done:
            obs = ep2.observe()
            q = quantise(obs, walls.shape)
            d = expert.decide(obs)
            tokens = encode_state(walls, ep.goal_cell, obs["pos"], obs["vel"])
            state2, _, action2 = aug(tokens, d.procedure, d.bins, _rng_drawing(t))
            turned = {"pos": _turn(t) @ q["pos"], "vel": _turn(t) @ q["vel"], "goal_cell": goal2}
            turned["cell"] = cell_of(turned["pos"], walls.shape)
            assert np.array_equal(state2, encode_state(turned_walls, goal2, turned["pos"], turned["vel"]))
            cell = obs["cell"]
            d_here = expert.dist[cell[0], cell[1]]
            nbrs = [expert.dist[cell[0] + dr, cell[1] + dc] for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))]
            if sum(n == d_here - 1 for n in nbrs) <= 1:
                assert np.array_equal(action2, expert2.decide(turned, False).bins), (t, cell)
                compared += 1
            ep2.step(d.force)
    assert compared >= 80  # of 8 x 25 decisions; the others sit on a tie or in the goal cell


def _rng_drawing(t: int) -> np.random.Generator:
    """A generator whose first ``integers(8)`` is t."""
    for seed in range(1000):
        if int(np.random.default_rng(seed).integers(8)) == t:
            return np.random.default_rng(seed)
    raise AssertionError(t)


def test_layouts_are_disjoint_across_splits_and_data_is_the_experts(tmp_path):
    dm = PointMazeDataModule(size=10, n_train=3, train_episodes=1, n_val=1,
                             val_episodes=1, n_val_envs=3, val_envs_episodes=1,
                             n_heldout=3, heldout_episodes=1, train_envs_episodes=1,
                             data_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    layouts = {split: {layout(10, s).tobytes() for s in dm.seeds(split, 3)} for split in ("train", "val", "heldout")}
    assert not layouts["train"] & layouts["val"] and not layouts["train"] & layouts["heldout"]
    assert not layouts["val"] & layouts["heldout"]
    records = dm.records["train"]
    assert records.meta["expert_success"] == 1.0 and records.actions.shape[1] == 2
    assert set(records.groups.tolist()) == {0, 1, 2}
    suites = dm.eval_suites()
    assert {s: len(v) for s, v in suites.items()} == {"val_envs": 3, "heldout": 3, "train_envs": 3}
    data_seeds = {episode_seed_of(s, j) for s in dm.seeds("train", 3) for j in range(1)}
    assert not data_seeds & set(suites["train_envs"].seeds)  # the gap suite plays episodes the data never saw
    assert suites["heldout"].expert_stats()["success_rate"] == 1.0


def test_a_tiny_fit_from_the_command_line(cli, tmp_path):
    proc = cli(["fit", "--config", "conf/pointmaze.yaml", *TINY_POINTMAZE])
    assert proc.returncode == 0
    run_dir = next((tmp_path / "runs").glob("pointmaze_pc/version_0"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir)).Reload()
    for name in ("val_envs/success_rate", "heldout/success_rate", "heldout/procedure_acc", "train/loss"):
        assert name in acc.Tags()["scalars"], name
    assert "heldout/episode_ball_path_over_model_bfs_map" in acc.Tags()["images"]  # the GIF of a held-out episode
    assert {p.name for p in run_dir.glob("checkpoints/*.ckpt")} == {"last.ckpt", "best.ckpt"}
