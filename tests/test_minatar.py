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


def test_noop_margin_takes_the_noop_only_within_the_margin():
    env = make_env("breakout", seed=1)
    play(env, [0] * 10)  # a state where the search prefers 'r' but the no-op is not far behind
    search = lambda margin: MCTS(MCTSConfig(simulations=32, horizon=8, noop_margin=margin),
                                 env.minimal_action_set(), seed=0).search(env)
    plain = search(0.0)
    shortfall = plain.root_q[plain.action] - plain.root_q[0]
    assert plain.action != 0 and 0 < shortfall < 1
    # the tree is the same for every margin (same seed); only the final choice differs
    assert search(shortfall / 2).action == plain.action
    within = search(shortfall * 2)
    assert within.action == 0 and within.pv[0].action == 0
    assert within.pv[0].value == within.root_q[0]  # the PV follows the chosen child
    assert within.root_q == plain.root_q


def test_breakout_rollout_heuristic_follows_the_ball():
    from pc_lightning.domains.minatar.expert import HEURISTICS

    env = make_env("breakout", seed=0)
    game = env.env
    for ball_x, pos, expected in [(2, 5, 1), (7, 5, 3), (5, 5, 0)]:  # 'l', 'r', 'n'
        game.ball_x, game.pos = ball_x, pos
        assert HEURISTICS["breakout"](game) == expected
    cfg = MCTSConfig(simulations=16, horizon=30, heuristic_prob=1.0)
    assert MCTS(cfg, env.minimal_action_set(), game="breakout").heuristic is not None
    assert MCTS(cfg, env.minimal_action_set(), game="freeway").heuristic is None  # no heuristic: ignored
    assert MCTS(MCTSConfig(), env.minimal_action_set(), game="breakout").heuristic is None  # off by default


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
    assert state.shape == (11, 10) and state.max() < codec.state_vocab
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


def test_codec_constraint_keeps_expert_blocks_and_repairs_broken_ones():
    """Constrained decoding: the expert's own PV blocks already satisfy the invariants
    (unchanged), and a block with another carried action, a wrong depth, an action beside
    LAST or a non-PAD tail is repaired; its frame is never touched."""
    codec = Codec("breakout")
    frame = np.zeros((10, 10), np.int64)
    pv = [PVStep(a, frame + a, 0.3 * a, 5) for a in (3, 1, 1)]
    blocks = torch.from_numpy(codec.encode_procedure(pv, frame))  # (4, 11, 10)
    state = torch.from_numpy(codec.encode_state(frame))[None]
    for l in range(len(blocks) - 1):
        assert torch.equal(codec.constrain(state, blocks[l : l + 1], blocks[l + 1 : l + 2]), blocks[l + 1 : l + 2])
    broken = blocks[3:4].clone()  # the LAST block
    broken[0, 10, 0] = codec.action_base + 1  # an action beside LAST
    broken[0, 10, 2] = codec.action_base + 0  # another carried action
    broken[0, 10, 4] = codec.depth_base + 1  # a wrong depth
    broken[0, 10, 7] = 0  # a frame token where PAD belongs
    broken[0, 5, 5] = 7  # a frame cell: left alone
    fixed = codec.constrain(state, blocks[2:3], broken)
    assert fixed[0, 10, 0] == codec.pad and fixed[0, 10, 2] == blocks[0, 10, 2] and fixed[0, 10, 4] == codec.depth_base + 3
    assert fixed[0, 10, 7] == codec.pad and torch.equal(fixed[0, 10], blocks[3, 10])
    assert fixed[0, 5, 5] == 7 and torch.equal(fixed[0, :10], broken[0, :10])
    root = Codec("breakout", root_block=True)
    root_blocks = torch.from_numpy(root.encode_procedure(pv, frame, {0: 0.1, 1: 0.2, 3: 0.3}))
    assert torch.equal(root.constrain(state, root_blocks[:1], root_blocks[1:2]), root_blocks[1:2])


def test_codec_root_block_comes_before_the_pv():
    codec = Codec("breakout", root_block=True)
    tokens = frame_tokens(np.random.default_rng(1).random((10, 10, N_CHANNELS["breakout"])) < 0.2)
    pv = [PVStep(action=3, frame=tokens, value=0.7, visits=5), PVStep(action=0, frame=tokens, value=0.2, visits=2)]
    blocks = codec.encode_procedure(pv, tokens, root_q={0: -1.0, 1: 0.3, 3: 5.0})  # breakout's n, l, r
    assert blocks.shape == (4, 11, 10) and blocks.max() < codec.step_vocab and codec.first_pv_step == 1
    assert codec.first_imagined == 2 and codec.procedure_blocks(2) == 4
    root = blocks[0]
    assert (root[:10] == codec.pad).all() and root[10, 3] == codec.more
    bins = [int(np.searchsorted(VALUE_EDGES, q, side="right")) for q in (-1.0, 0.3, 5.0)]
    assert root[10, [4, 5, 7]].tolist() == [codec.value_base + b for b in bins]
    assert (root[10, [0, 1, 2, 6, 8, 9]] == codec.pad).all()  # actions 2, 4, 5: not breakout's
    assert np.array_equal(blocks[1:], Codec("breakout").encode_procedure(pv, tokens))
    state = torch.from_numpy(np.stack([codec.encode_state(tokens)] * 4))
    assert codec.stop_fn(state, torch.from_numpy(blocks)).tolist() == [False, False, False, True]
    weights = np.array(codec.cell_weights())
    plain = np.array(Codec("breakout").cell_weights())  # PV steps: depth in column 4, PAD after it
    # every cell of row 10 is trained, the always-PAD ones included: a generated block is the
    # next block's input and the action query's, whatever the loss cares about
    for w in (weights, plain):
        assert (w[10] > 0).all() and w[10, 0] == w[10, 2] > w[10, 1] and (w[:10] == 1).all()
    no_frames = np.array(codec.cell_weights(frame=0.0))  # the frames-off ablation: row 10 unchanged
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
    "--data.init_args.batch_size", "4", "--data.init_args.workers", "1",
    "--data.init_args.expert", "{simulations: 8, horizon: 4, pv_depth: 2}",
]


@pytest.mark.parametrize("config,extra", [("minatar", []), ("minatar_bc", []), ("minatar_aux_bc", []),
                                          ("minatar", ["--data.init_args.root_block", "true"])])
def test_fit_minatar_every_variant(cli, tmp_path, config, extra):
    from test_cli import images, scalars

    proc = cli(["fit", "--config", f"conf/{config}.yaml", *TINY_MINATAR, *extra,
                "--data.init_args.game", "breakout"])  # its expert scores within 20 steps
    assert proc.returncode == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    values = scalars(run_dir)
    for name in ["heldout/return", "heldout_shift/return", "train_envs/return", "heldout/return_frac_expert",
                 "train/loss", "val/loss", "val/action_acc"]:
        assert name in values, f"{name} not logged; got {sorted(values)}"
    assert len(values["heldout/return"]) == 2
    assert "heldout/episode_real_left_imagined_right" in images(run_dir)
    if config != "minatar_bc":
        assert "heldout/procedure_acc" in values
        assert all(0.0 <= v <= 1.0 for v in values["heldout/procedure_acc"])
    assert list((tmp_path / "data").glob("minatar-train-*.pt"))
