"""Breakout's flight procedure: the expert, its encoding, the brick layouts, a tiny fit."""

import numpy as np
import pytest
import torch

from conftest import ROOT  # noqa: F401  (tests run from the repository root)
from pc_lightning.model import ProcedureCloner
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.env import make_env, restore, snapshot
from pc_lightning.domains.minatar.flight import (CH_DOWN, CH_RIGHT, CH_STRIKE, LEFT, MAX_FLIGHT, NOOP, RIGHT,
                                                  BrickLayout, action_field, observe, plan)
from pc_lightning.domains.minatar.flight_codec import ACTION, FLY, FlightCodec
from pc_lightning.domains.minatar.flight_suite import FlightSuite, block_kinds, strike_frames


def states(seeds, steps=120, layout=None):
    """Environments a few expert steps into episodes (the ball in play, sometimes after strikes)."""
    for seed in seeds:
        env = make_env("breakout", seed, 0.1, layout=layout)
        for t in range(int(np.random.default_rng(seed).integers(0, steps))):
            _, terminal = env.act(plan(env).action)
            if terminal:  # the expert lost the ball (a sticky action): this episode's start instead
                env = make_env("breakout", seed, 0.1, layout=layout)
                break
        yield env


@pytest.mark.parametrize("family", ["standard", "holes", "random"])
def test_imagined_frames_are_the_games_future(family):
    """Whatever the paddle does before the landing, the real frames equal the imagined ones
    (the ball never meets the paddle in flight), hidden channels included."""
    layout = BrickLayout.parse(family)
    rng = np.random.default_rng(0)
    checked = 0
    for env in states(range(100, 112), layout=layout):
        flight = plan(env)
        if not flight.landed:
            continue
        for k in range(1, len(flight.frames)):
            env.env.act(int(rng.choice([NOOP, LEFT, RIGHT])))  # the game's step: any move
            real = observe(env)
            assert (real[..., 1:] == flight.frames[k][..., 1:]).all(), f"frame {k} differs from the game's"
            checked += 1
    assert checked > 30


def test_plan_leaves_the_environment_as_it_was():
    env = next(states([5]))
    before = snapshot(env, with_rng=True)
    plan(env)
    after = snapshot(env, with_rng=True)
    for k, v in before.items():
        if k == "__rng":
            assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(v, after[k]))
        else:
            assert np.array_equal(np.asarray(v), np.asarray(after[k])), k


def test_the_last_frame_is_just_before_the_landing_and_the_action_returns_the_ball():
    """The last imagined frame has the ball on row 8 moving down; a paddle on either of the two
    columns returns the ball; the action moves towards the nearer one."""
    for env in states(range(20, 40)):
        flight = plan(env)
        last = flight.frames[-1]
        y, x = np.argwhere(last[..., 1])[0]
        assert y == 8 and last[y, x, CH_DOWN]
        dx = 1 if last[y, x, CH_RIGHT] else -1
        assert flight.keep == x and flight.flip == int(np.clip(x + dx, 0, 9))
        for column in (flight.keep, flight.flip):  # the game returns the ball from either column
            probe = make_env("breakout", 0, 0.0)
            restore(probe, snapshot(env))
            for _ in range(len(flight.frames) - 1):
                probe.env.act(NOOP)
            probe.env.pos = column
            _, terminal = probe.env.act(NOOP)
            assert not terminal and probe.env.ball_dir in (0, 1)
        pos = env.env.pos
        target = flight.flip if abs(pos - flight.flip) < abs(pos - flight.keep) else flight.keep
        assert flight.action == (RIGHT if pos < target else LEFT if pos > target else NOOP)


def test_action_field():
    assert action_field(3, 4).tolist() == [RIGHT] * 3 + [NOOP, NOOP] + [LEFT] * 5
    assert action_field(9, 9).tolist() == [RIGHT] * 9 + [NOOP]
    assert action_field(5, 4)[0] == RIGHT and action_field(5, 4)[4] == NOOP and action_field(5, 4)[5] == NOOP


def test_observe_shows_the_hidden_direction_and_strike():
    env = make_env("breakout", 1, 0.0)
    game = env.env
    for d, (right, down) in enumerate([(0, 0), (1, 0), (1, 1), (0, 1)]):  # MinAtar's four directions
        game.ball_dir, game.strike = d, d == 2
        frame = observe(env)
        y, x = game.ball_y, game.ball_x
        assert frame[y, x, CH_RIGHT] == right and frame[y, x, CH_DOWN] == down and frame[y, x, CH_STRIKE] == (d == 2)
        assert frame[..., 4:].sum() == right + down + (d == 2)  # only at the ball's cell
        assert (frame[..., :4] == env.state()).all()


def test_labels_are_deterministic():
    a = [plan(env) for env in states(range(50, 54))]
    b = [plan(env) for env in states(range(50, 54))]
    for x, y in zip(a, b):
        assert np.array_equal(x.frames, y.frames) and x.action == y.action and np.array_equal(x.field, y.field)


def test_a_long_flight_is_cut():
    """In a thick layout the ball can fly among the bricks for long: the procedure stops at
    MAX_FLIGHT frames and still decides."""
    layout = BrickLayout(family="thick", rows=(1, 6))
    cut = [f for env in states(range(60, 70), steps=200, layout=layout) for f in [plan(env)] if not f.landed]
    assert cut, "no flight was cut in a thick layout"
    for f in cut:
        assert len(f.frames) == MAX_FLIGHT + 1 and f.keep == f.flip


@pytest.mark.parametrize("spec", ["holes", "thick", "random", {"family": "random", "rows": [2, 4], "density": 0.5}])
def test_the_layout_asked_for_is_the_layout_the_game_shows(spec):
    layout = BrickLayout.parse(spec)
    for seed in (3, 4):
        env = make_env("breakout", seed, 0.1, layout=layout)
        shown = env.state()[..., 3]
        assert np.array_equal(shown, layout.bricks_for(seed).astype(bool))
    if layout.family == "holes":
        assert shown[1:4].sum() == 30 - 12 and shown[4:].sum() == 0
    if layout.family == "thick":
        assert shown[1:6].all() and shown[6:].sum() == 0
    lo, hi = layout.rows
    if layout.family == "random":
        assert shown[:lo].sum() == 0 and shown[hi + 1:].sum() == 0 and shown.sum() > 0
    a, b = (make_env("breakout", s, 0.1, layout=layout).state()[..., 3] for s in (3, 4))
    assert layout.family == "thick" or not np.array_equal(a, b), "a seeded family gives each episode its own layout"


def test_an_explicit_map():
    m = np.zeros((10, 10), dtype=int)
    m[2, ::2] = 1
    m[5, 3] = 1
    layout = BrickLayout.parse({"family": "map", "bricks": m.tolist()})
    assert np.array_equal(make_env("breakout", 0, 0.1, layout=layout).state()[..., 3], m.astype(bool))


@pytest.mark.parametrize("bad, key", [
    ({"family": "wall"}, "family"), ({"family": "thick", "rows": [0, 3]}, "rows"),
    ({"family": "random", "density": 1.5}, "density"), ({"family": "map", "bricks": [[1] * 10] * 10}, "bricks")])
def test_bad_layouts_name_the_key(bad, key):
    with pytest.raises(ValueError, match=f"shift.bricks.{key}"):
        BrickLayout.parse(bad)


def test_codec_round_trip():
    codec = FlightCodec()
    for env in states(range(200, 208)):
        flight = plan(env)
        blocks = codec.encode_procedure(flight)
        assert blocks.shape == (len(flight.frames), 11, 10)  # f_1 .. f_k, then the decision
        assert np.array_equal(codec.decode_state(codec.encode_state(flight.frames[0])), flight.frames[0])
        for k, block in enumerate(blocks[:-1]):
            view = codec.decode_step(block)
            assert view.field is None and np.array_equal(view.frame, flight.frames[k + 1])
        view = codec.decode_step(blocks[-1])
        assert np.array_equal(view.field, flight.field) and not view.frame.any()
        stops = codec.stop_fn(None, torch.from_numpy(blocks)).tolist()
        assert stops == [False] * (len(blocks) - 1) + [True]
        # the action is the field at the paddle's column
        paddle = int(np.argmax(flight.frames[0][9, :, 0]))
        assert view.field[paddle] == flight.action
    bad = blocks[-1].copy()
    bad[10, 3] = FLY
    assert codec.decode_step(bad) is None
    assert ACTION + RIGHT < codec.step_vocab


def test_block_kinds():
    codec = FlightCodec()
    env = make_env("breakout", 0, 0.0)
    env.env.ball_x, env.env.ball_y, env.env.ball_dir = 4, 5, 0  # up-left towards the bricks (rows 1-3)
    flight = plan(env)
    blocks = codec.encode_procedure(flight)
    kinds = block_kinds(codec.encode_state(flight.frames[0]), blocks, codec)
    assert kinds[-1] == 3 and set(kinds[:-1]) == {1, 2}
    struck = int(np.argmax(kinds == 2))  # the first strike frame: a brick is gone there
    before, after = flight.frames[struck][..., 3].sum(), flight.frames[struck + 1][..., 3].sum()
    assert after == before - 1


def test_strike_frames():
    frames = np.zeros((3, 10, 10, 7), dtype=bool)
    frames[:, 1, :, 3] = True
    frames[2, 1, 4, 3] = False  # a brick gone
    assert strike_frames(frames).tolist() == [False, False, True]


def test_suite_scores_against_the_expert_on_its_own_episodes():
    suite = FlightSuite([2_000_000, 2_000_001], 0.1, False, 60, layout=BrickLayout.parse("holes"))
    ref = suite.expert_return()
    episodes = suite.episodes()
    while not episodes.done.all():  # the expert itself, through the suite's interface
        idx = np.flatnonzero(~episodes.done)
        episodes.step(idx, np.array([plan(episodes.envs[i]).action for i in idx]))
    stats = episodes.stats()
    assert ref > 0 and stats["return"].mean() == pytest.approx(ref)
    assert stats["return_frac_expert"].mean() == pytest.approx(1.0)


def test_datamodule_flight(tmp_path):
    dm = MinAtarDataModule(procedure="flight", n_train=2, max_episode_steps=30, data_dir=str(tmp_path),
                           workers=1)
    dm.setup()
    rec = dm.records["train"]
    assert rec.states.shape[1:] == (10, 10) and rec.steps.shape[1:] == (11, 10)
    assert len(rec) == 60 and not list(tmp_path.glob("minatar-net-*")), "the flight expert trains no network"
    assert dm.spec.state_vocab == 128 and dm.spec.step_bits == 7
    suites = dm.eval_suites()
    assert suites["heldout_shift"].layout.family == "holes" and suites["heldout"].layout is None
    with pytest.raises(ValueError, match="data.init_args.procedure"):
        MinAtarDataModule(procedure="flight", game="freeway")
    with pytest.raises(ValueError, match="data.init_args.procedure"):
        MinAtarDataModule(procedure="imagine")
    with pytest.raises(ValueError, match="shift.bricks"):
        MinAtarDataModule(game="seaquest", shift={"bricks": "holes"})


TINY_FLIGHT = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.log_every_n_steps", "1", "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.n_train", "2", "--data.init_args.max_episode_steps", "20",
    "--data.init_args.n_heldout", "2", "--data.init_args.n_train_envs", "1",
    "--data.init_args.n_val_envs", "1", "--data.init_args.batch_size", "4", "--data.init_args.workers", "1",
]


@pytest.mark.parametrize("config", ["minatar", "minatar_bc", "minatar_aux_bc"])
def test_fit_flight_every_variant(cli, tmp_path, config):
    from test_cli import images, scalars

    proc = cli(["fit", "--config", f"conf/{config}.yaml", "--config", "conf/minatar/breakout_flight.yaml",
                *TINY_FLIGHT])
    assert proc.returncode == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    values = scalars(run_dir)
    for name in ["val_envs/return", "heldout/return", "heldout_shift/return", "heldout_shift/return_frac_expert",
                 "train/loss", "val/loss"]:
        assert name in values, f"{name} not logged; got {sorted(values)}"
    assert "heldout/episode_real_left_imagined_right" in images(run_dir)
    if config != "minatar_bc":
        assert {"heldout/frame_acc_free", "heldout/decision_acc", "heldout/procedure_acc"} <= set(values)
    assert not list((tmp_path / "data").glob("minatar-net-*"))


def test_suite_animates_an_episode_with_the_imagined_landing(tmp_path):
    """The GIF: per decision the real frame beside the model's imagined one (blank for BC), for
    either variant, at most ``animation_steps`` frames."""
    dm = MinAtarDataModule(procedure="flight", n_train=2, max_episode_steps=30, data_dir=str(tmp_path),
                           workers=1)
    dm.setup()
    suite = dm.eval_suites()["heldout"]
    suite.animation_steps = 5
    torch.manual_seed(0)
    frames = {}
    for variant in ("pc", "bc"):
        module = ProcedureCloner(variant=variant, spec=dm.spec, d_model=16, n_heads=2, n_layers=1, d_ff=32).eval()
        with torch.no_grad():
            frames[variant] = suite.animate(module)
        assert frames[variant].dtype == np.uint8 and frames[variant].ndim == 4 and frames[variant].shape[-1] == 3
        assert 1 <= len(frames[variant]) <= 5
    assert frames["pc"].shape[1:] == frames["bc"].shape[1:]
