"""MinAtar domain: snapshots, the MCTS expert, the codec, and a tiny fit through the CLI."""

import numpy as np
import pytest
import torch

from conftest import ROOT  # noqa: F401  (tests run from the repository root)
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar.codec import VALUE_EDGES, Codec
from pc_lightning.domains.minatar.env import GAMES, N_CHANNELS, frame_tokens, make_env, restore, snapshot, \
    tokens_to_frame
from pc_lightning.domains.minatar.expert import MCTS, MCTSConfig, PVStep


def play(env, actions) -> list[tuple]:
    """(reward, terminal, frame bytes) per action, resetting after a terminal state."""
    out = []
    for a in actions:
        r, terminal = env.act(int(a))
        out.append((r, terminal, env.state().tobytes()))
        if terminal:
            env.reset()
    return out


@pytest.mark.parametrize("game", GAMES)
def test_restored_snapshot_reproduces_the_future(game):
    env = make_env(game, seed=5, sticky_action_prob=0.1, difficulty_ramping=True)
    rng = np.random.default_rng(0)
    play(env, rng.integers(0, 6, size=30))
    snap = snapshot(env, with_rng=True)
    actions = rng.integers(0, 6, size=200)
    first = play(env, actions)
    restore(env, snap)
    again = play(env, actions)
    assert first == again
    restore(env, snap)  # a snapshot restores many times
    assert play(env, actions) == first


@pytest.mark.parametrize("game", GAMES)
def test_search_leaves_the_environment_as_it_was(game):
    env = make_env(game, seed=3)
    play(env, np.random.default_rng(1).integers(0, 6, size=10))
    snap = snapshot(env, with_rng=True)
    before = env.state().copy()
    result = MCTS(MCTSConfig(simulations=16, horizon=5), env.minimal_action_set(), seed=0).search(env)
    assert result.action in env.minimal_action_set()
    assert np.array_equal(env.state(), before)
    assert env.random.get_state()[1].tolist() == snap["__rng"][1].tolist(), "the episode's RNG is untouched"
    actions = np.random.default_rng(2).integers(0, 6, size=50)
    after_search = play(env, actions)
    restore(env, snap)
    assert play(env, actions) == after_search


def test_mcts_takes_the_scoring_step_in_freeway():
    """The chicken one row below the top, free to move, no car near: 'up' scores now and
    every other action scores later, so the search must choose 'up' (action 2)."""
    env = make_env("freeway", seed=0, sticky_action_prob=0.0)
    game = env.env
    game.pos, game.move_timer = 1, 0
    for car in game.cars:  # park every car far from the chicken's column (x=4), moving slowly
        car[0] = 9
    snap = snapshot(env)
    rewards = {}
    for a in env.minimal_action_set():
        restore(env, snap)
        rewards[a] = env.act(a)[0]
    assert rewards[2] == 1 and all(r == 0 for a, r in rewards.items() if a != 2)
    restore(env, snap)
    result = MCTS(MCTSConfig(simulations=64, horizon=10), env.minimal_action_set(), seed=0).search(env)
    assert result.action == 2
    assert result.pv[0].action == 2 and result.pv[0].value > 0.5


def test_mcts_avoids_losing_the_ball_in_breakout():
    """Ball falling toward the bottom-left corner, paddle far right: only moving left in time
    saves it (4 cells in 4 steps), so the search must choose 'left'."""
    env = make_env("breakout", seed=0, sticky_action_prob=0.0)
    game = env.env
    game.ball_x, game.ball_y, game.ball_dir, game.pos = 4, 5, 3, 5  # dir 3: down-left
    game.last_x, game.last_y = 5, 4
    snap = snapshot(env)
    for first, saved in [(3, False), (0, False), (1, True)]:  # then left until the ball lands
        restore(env, snap)
        outcomes = [env.act(a)[1] for a in [first, 1, 1, 1]]
        assert any(outcomes) != saved
    restore(env, snap)
    result = MCTS(MCTSConfig(simulations=128, horizon=10), env.minimal_action_set(), seed=0).search(env)
    assert result.action == 1  # 'l'


@pytest.mark.parametrize("game", GAMES)
def test_codec_round_trip(game):
    codec = Codec(game)
    c = N_CHANNELS[game]
    rng = np.random.default_rng(0)
    frames = rng.random((3, 10, 10, c)) < 0.2
    tokens = frame_tokens(frames[0])
    assert tokens.shape == (10, 10) and tokens.max() < codec.pad
    assert np.array_equal(tokens_to_frame(tokens, c), frames[0])
    state = codec.encode_state(tokens)
    assert state.shape == (10, 10) and state.max() < codec.state_vocab  # the frame alone; steps are 11 x 10
    assert np.array_equal(codec.decode_state(state), frames[0])
    pv = [PVStep(action=a, frame=frame_tokens(f), value=v, visits=1)
          for a, f, v in zip([1, 4, 0], frames, [-2.0, 0.7, 100.0])]
    blocks = codec.encode_procedure(pv, tokens)
    assert blocks.shape == (4, 11, 10) and blocks.max() < codec.step_vocab
    assert codec.procedure_blocks(3) == 4 and codec.first_imagined == 1
    # block l: the frame f_l (the state's for l = 0, else the one a_{l-1} reached) and a_l from it
    frames_in = [frames[0]] + list(frames)
    for i, block in enumerate(blocks):
        a, frame, v, root, last = codec.decode_step(block)
        assert root == pv[0].action and last == (i == 3)
        assert np.array_equal(frame, frames_in[i])
        if i < 3:
            assert a == pv[i].action and v == int(np.searchsorted(VALUE_EDGES, pv[i].value, side="right"))
        else:
            assert a is None and v is None
        assert block[10, 4] == codec.depth_base + i  # the block's depth: where a PV ends is visible
    stops = codec.stop_fn(torch.from_numpy(np.stack([state] * 4)), torch.from_numpy(blocks))
    assert stops.tolist() == [False, False, False, True]
    malformed = blocks[0].copy()
    malformed[10, 0] = codec.pad
    assert codec.decode_step(malformed) is None
    empty = codec.encode_procedure([], tokens)  # a search that expanded nothing: 'n' to the same frame
    assert empty.shape == (2, 11, 10) and codec.decode_step(empty[0])[0] == 0 and codec.decode_step(empty[1])[4]


def test_codec_cell_weights():
    """Every cell of row 10 is trained, the always-PAD ones included: a generated block is the
    next block's input and the action query's, whatever the loss cares about; the action
    tokens weigh most; the frames-off ablation zeroes the frame cells only."""
    weights = np.array(Codec("breakout").cell_weights())
    assert (weights[10] > 0).all() and weights[10, 0] == weights[10, 2] > weights[10, 1] and (weights[:10] == 1).all()
    no_frames = np.array(Codec("breakout").cell_weights(frame=0.0))
    assert (no_frames[:10] == 0).all() and np.array_equal(no_frames[10], weights[10])
    spec = MinAtarDataModule(game="breakout", action_weight=500.0, frame_weight=0.0).spec
    w = np.array(spec.step_cell_weights)
    assert (w[:10] == 0).all() and w[10, 0] == w[10, 2] == 500.0 and w[10, 1] == 5.0
    with pytest.raises(ValueError, match="frame_weight"):
        MinAtarDataModule(game="breakout", frame_weight=-1.0)


TINY_MINATAR = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.log_every_n_steps", "1", "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.n_train_episodes", "2", "--data.init_args.max_episode_steps", "20",
    "--data.init_args.n_heldout_episodes", "2", "--data.init_args.train_eval_episodes", "1",
    "--data.init_args.n_val_env_episodes", "1",
    "--data.init_args.batch_size", "4", "--data.init_args.workers", "1",
    "--data.init_args.expert", "{simulations: 8, horizon: 4, pv_depth: 2}",
]


@pytest.mark.parametrize("config", ["minatar", "minatar_bc", "minatar_aux_bc"])
def test_fit_minatar_every_variant(cli, tmp_path, config):
    from test_cli import images, scalars

    proc = cli(["fit", "--config", f"conf/{config}.yaml", *TINY_MINATAR,
                "--data.init_args.game", "breakout"])  # its expert scores within 20 steps
    assert proc.returncode == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    values = scalars(run_dir)
    for name in ["val_envs/return", "heldout/return", "heldout_shift/return", "train_envs/return",
                 "heldout/return_frac_expert",
                 "train/loss", "val/loss", "val/action_acc"]:
        assert name in values, f"{name} not logged; got {sorted(values)}"
    assert len(values["heldout/return"]) == 2
    assert "heldout/episode_real_left_imagined_right" in images(run_dir)
    if config != "minatar_bc":
        assert "heldout/procedure_acc" in values
        assert all(0.0 <= v <= 1.0 for v in values["heldout/procedure_acc"])
    assert list((tmp_path / "data").glob("minatar-train-*.pt"))
