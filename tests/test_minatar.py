"""MinAtar domain: snapshots, the network and the guided search, the codec, and a tiny fit through the CLI."""

import numpy as np
import pytest
import torch

from conftest import ROOT, freeway_one_step_from_scoring  # noqa: F401  (tests run from the repository root)
from pc_lightning.domains.minatar import MinAtarDataModule
from pc_lightning.domains.minatar import network
from pc_lightning.domains.minatar.codec import COL_ACTION, COL_DECISION, COL_END, SCORE_BINS, Codec
from pc_lightning.domains.minatar.env import ACTION_NAMES, GAMES, N_CHANNELS, frame_tokens, make_env, minatar_actions, \
    play_episode, restore, snapshot, tokens_to_frame
from pc_lightning.domains.minatar.network import NetConfig, get_net, load_net, net_path
from pc_lightning.domains.minatar.search import GuidedSearch, PVStep, RootAction, SearchConfig, SearchResult


def known(n_actions: int, value=lambda obs: 0.0, logits=None):
    """An evaluator with a known value function of the observation and a fixed prior (uniform by default)."""
    logits = np.zeros(n_actions) if logits is None else np.asarray(logits, dtype=np.float64)
    logp = logits - np.log(np.exp(logits).sum())

    def evaluate(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(logp, (len(obs), 1)), np.array([float(value(o)) for o in obs])
    return evaluate


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
    actions = env.minimal_action_set()
    result = GuidedSearch(SearchConfig(simulations=12, max_depth=4), actions, known(len(actions))).search(env)
    assert result.action in actions and len(result.root) == len(actions)
    assert np.array_equal(env.state(), before)
    assert env.random.get_state()[1].tolist() == snap["__rng"][1].tolist(), "the episode's RNG is untouched"
    moves = np.random.default_rng(2).integers(0, 6, size=50)
    after_search = play(env, moves)
    restore(env, snap)
    assert play(env, moves) == after_search


def test_search_takes_the_scoring_step_in_freeway():
    """The chicken one row below the top, free to move, no car near: 'up' scores now and
    every other action scores later; with a value of 0 everywhere the search must choose
    'up' (action 2), and its procedure's scores block gives 'up' alone the top bin."""
    env = freeway_one_step_from_scoring()
    actions = env.minimal_action_set()
    result = GuidedSearch(SearchConfig(simulations=16, max_depth=3), actions, known(len(actions))).search(env)
    assert result.action == 2
    up = result.root[actions.index(2)]
    assert up.value > 0.9 and up.scaled == 1.0 and result.pv[0].action == 2
    blocks = Codec("freeway").encode_procedure(result, frame_tokens(env.state()))
    scores = Codec("freeway").decode_step(blocks[0]).scores
    top = SearchConfig().score_bins - 1
    assert scores[actions.index(2)] == up.bin == top
    assert all(b < top for i, b in enumerate(scores) if i != actions.index(2))


def paddle_column(obs: np.ndarray) -> int:
    channel = make_env("breakout", 0).env.channels["paddle"]
    return int(np.argmax(obs[9, :, channel]))


def test_search_follows_a_known_value_function():
    """Breakout with a value that grows as the paddle goes right and a uniform prior: the
    search moves right ('r', 3). With a constant value, the prior decides: it favours 'l'."""
    env = make_env("breakout", seed=0, sticky_action_prob=0.0)
    env.env.pos = 4
    actions = env.minimal_action_set()  # n l r
    right = GuidedSearch(SearchConfig(simulations=16), actions, known(3, value=paddle_column)).search(env)
    assert right.action == 3
    assert [r.action for r in right.root] == [0, 1, 3]
    assert right.root[2].value > right.root[0].value > right.root[1].value
    prior = GuidedSearch(SearchConfig(simulations=16), actions, known(3, logits=[0.0, 2.0, 0.0])).search(env)
    assert prior.action == 1
    # scores within score_bin nats of the best tie, and the game's order breaks the tie
    close = known(3, logits=[0.0, 0.1, 0.0])
    tied = GuidedSearch(SearchConfig(simulations=16, score_bins=SCORE_BINS), actions, close).search(env)
    assert [r.bin for r in tied.root] == [SCORE_BINS - 1] * 3 and tied.action == 0
    fine = GuidedSearch(SearchConfig(simulations=16, score_bin=0.08, score_bins=SCORE_BINS), actions, close).search(env)
    assert [r.bin for r in fine.root] == [SCORE_BINS - 2, SCORE_BINS - 1, SCORE_BINS - 2] and fine.action == 1
    # the procedure's resolution never changes the action: two bins (top or not) decide alike
    two = GuidedSearch(SearchConfig(simulations=16, score_bin=0.08, score_bins=2), actions, close).search(env)
    assert [r.bin for r in two.root] == [0, 1, 0] and two.action == fine.action


def test_labels_are_deterministic():
    """The same state gives the same action and the same procedure: from another planner,
    after other searches, and from another environment that reached the same state."""
    codec = Codec("breakout")
    cfg = SearchConfig(simulations=24)
    env = make_env("breakout", seed=7)
    evaluate = known(3, value=paddle_column, logits=[0.1, 0.0, 0.2])
    play(env, [0, 1, 1, 3, 0, 3])
    snap = snapshot(env, with_rng=True)
    first = GuidedSearch(cfg, env.minimal_action_set(), evaluate)
    a = first.search(env)
    blocks = codec.encode_procedure(a, frame_tokens(env.state()))
    for _ in range(3):  # other states searched in between
        env.act(first.search(env).action)
    restore(env, snap)
    for planner in (first, GuidedSearch(cfg, env.minimal_action_set(), evaluate)):
        b = planner.search(env)
        assert b.action == a.action
        assert np.array_equal(codec.encode_procedure(b, frame_tokens(env.state())), blocks)
    twin = make_env("breakout", seed=7)
    play(twin, [0, 1, 1, 3, 0, 3])
    assert np.array_equal(codec.encode_procedure(first.search(twin), frame_tokens(twin.state())), blocks)


def test_play_episode_stops_at_the_horizon_or_the_end():
    """``play_episode`` sums the rewards of the actions it takes and stops at max_steps or at the game's end."""
    up = ACTION_NAMES.index("u")
    env, twin = make_env("freeway", seed=0), make_env("freeway", seed=0)
    ret = play_episode(env, lambda: up, 150)
    rewards = [twin.act(up)[0] for _ in range(150)]
    assert ret == sum(rewards) > 1  # seed 0: always up crosses more than once in 150 steps
    assert np.array_equal(env.state(), twin.state())  # exactly 150 actions taken
    lost = make_env("breakout", seed=3)
    assert play_episode(lost, lambda: 0, 10_000) == 0.0 and lost.env.terminal  # never moving, the ball is lost


def test_shift_may_set_its_own_horizon(tmp_path, monkeypatch):
    """``shift.max_episode_steps`` runs heldout_shift past the training horizon (and then
    reports no fraction of the training episodes' return); the other suites keep theirs; an
    unknown shift key is named."""
    dm = MinAtarDataModule(game="space_invaders", data_dir=str(tmp_path), max_episode_steps=5,
                           shift={"difficulty_ramping": True, "max_episode_steps": 12})
    monkeypatch.setattr(dm, "net_path", lambda: tmp_path / "net.pt")  # episodes need no network
    monkeypatch.setattr(dm, "expert_return", lambda: 7.0)
    suites = dm.eval_suites()
    shifted, heldout = suites["heldout_shift"], suites["heldout"]
    assert (heldout.max_steps, heldout.difficulty_ramping, heldout.expert_return) == (5, False, 7.0)
    assert (shifted.max_steps, shifted.difficulty_ramping, shifted.expert_return) == (12, True, None)
    for suite, horizon in ((heldout, 5), (shifted, 12)):
        episodes = suite.episodes()
        while not episodes.done.all():
            idx = np.flatnonzero(~episodes.done)
            episodes.step(idx, np.zeros(len(idx), dtype=np.int64))  # no-op: space_invaders' aliens need long to kill
        stats = episodes.stats()
        assert stats["episode_length"].max() == horizon
        assert ("return_frac_expert" in stats) == (suite is heldout)
    with pytest.raises(ValueError, match="max_steps"):
        MinAtarDataModule(game="breakout", data_dir=str(tmp_path), shift={"max_steps": 10})


TINY_NET = NetConfig(total_steps=512, n_envs=4, n_steps=32, minibatches=2, epochs=1)


def test_network_cache_round_trips(tmp_path, monkeypatch):
    """A trained network is written once, named by its settings, loaded with weights_only, and
    gives the same outputs; a second call loads it without training; an interrupted training
    resumes from its partial file."""
    net = get_net("breakout", TINY_NET, tmp_path, progress=False)
    path = net_path("breakout", TINY_NET, tmp_path)
    assert path.is_file() and list(tmp_path.iterdir()) == [path]
    assert net.actions == minatar_actions("breakout") and net.meta["steps"] == 512
    torch.load(path, weights_only=True)  # plain tensors and values only
    obs = np.stack([make_env("breakout", s).state() for s in range(4)])
    logp, value = net.evaluate(obs)
    assert logp.shape == (4, 3) and value.shape == (4,) and np.allclose(np.exp(logp).sum(1), 1)
    again = load_net(path).evaluate(obs)
    assert np.array_equal(again[0], logp) and np.array_equal(again[1], value)
    monkeypatch.setattr(network, "train_net", lambda *a, **k: pytest.fail("a cached network was retrained"))
    get_net("breakout", TINY_NET, tmp_path)
    monkeypatch.undo()
    assert net_path("breakout", NetConfig(**{**TINY_NET.__dict__, "seed": 1}), tmp_path) != path

    saves = []
    real_save = network._save_atomic

    def interrupt_after_first_partial(blob, p):
        real_save(blob, p)
        saves.append(p.name)
        if p.name.endswith(".partial.pt"):
            raise KeyboardInterrupt

    other = tmp_path / "resume"
    monkeypatch.setattr(network, "_save_atomic", interrupt_after_first_partial)
    with pytest.raises(KeyboardInterrupt):
        network.train_net("breakout", TINY_NET, other / "net.pt", progress=False, checkpoint_every=2)
    assert (other / "net.partial.pt").is_file() and not (other / "net.pt").exists()
    network.train_net("breakout", TINY_NET, other / "net.pt", progress=False, checkpoint_every=2)
    resumed = load_net(other / "net.pt")
    assert resumed.meta["resumed_at"] == [2] and resumed.meta["steps"] == 512
    assert not (other / "net.partial.pt").exists()


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
    actions = minatar_actions(game)
    k = len(actions)
    bins = rng.integers(0, SCORE_BINS - 1, size=k)  # the search's score bins of the root actions
    top = int(rng.integers(k))
    bins[top] = SCORE_BINS - 1
    if k > 1:  # a tie in the top bin, broken by the game's order
        bins[(top + 1) % k] = SCORE_BINS - 1
    chosen = actions[min(top, (top + 1) % k)]
    roots = [RootAction(a, frame_tokens(frames[i % 3]), float(i), 1, 1.0 / k, float(bins[i]), i / max(k - 1, 1),
                        int(bins[i])) for i, a in enumerate(actions)]
    pv = [PVStep(chosen, frame_tokens(frames[1]), 0.5, 3), PVStep(actions[0], frame_tokens(frames[2]), 0.2, 1)]
    result = SearchResult(chosen, roots, pv)
    blocks = codec.encode_procedure(result, tokens)
    assert blocks.shape == (4, 11, 10) and blocks.max() < codec.step_vocab
    assert codec.procedure_blocks(2) == 4 and codec.procedure_blocks(0) == 2 and codec.first_imagined == 2
    views = [codec.decode_step(block) for block in blocks]
    for j, (block, view) in enumerate(zip(blocks, views)):
        assert view.last == (j == 3) and block[10, 9] == codec.index_base + j
    # x_0: the state's frame and every root action's score bin, nothing decided yet
    assert views[0].scores == bins.tolist() and views[0].decision is None and views[0].action is None
    assert np.array_equal(views[0].frame, frames[0])
    # x_1: the decision, read from x_0 alone (the first root action in the top bin), on the state's frame
    read = actions[int(np.argmax(views[0].scores))]
    assert read == chosen == views[1].decision == views[1].action and np.array_equal(views[1].frame, frames[0])
    # the PV: the frame after a, then after a_1; each block the action taken from its frame, and a
    assert [v.decision for v in views[2:]] == [chosen, chosen]
    assert views[2].action == actions[0] and views[3].action is None
    assert np.array_equal(views[2].frame, frames[1]) and np.array_equal(views[3].frame, frames[2])
    stops = codec.stop_fn(torch.from_numpy(np.stack([state] * len(blocks))), torch.from_numpy(blocks))
    assert stops.tolist() == [False, False, False, True]
    malformed = blocks[0].copy()
    malformed[10, k - 1] = codec.pad  # a root action without its score
    assert codec.decode_step(malformed) is None
    wrong_kind = blocks[1].copy()
    wrong_kind[10, COL_DECISION] = codec.score_base  # a score bin where the decision belongs
    assert codec.decode_step(wrong_kind) is None
    other = actions[(actions.index(chosen) + 1) % k]
    if other != chosen:
        with pytest.raises(ValueError, match="top score bin"):
            codec.encode_procedure(SearchResult(other, roots, pv), tokens)
    no_pv = codec.encode_procedure(SearchResult(chosen, roots, []), tokens)  # the decision block ends it
    assert no_pv.shape == (2, 11, 10)
    decision = codec.decode_step(no_pv[-1])
    assert decision.last and decision.decision == chosen and np.array_equal(no_pv[-1, :10], tokens)


def test_codec_cell_weights():
    """Every cell of row 10 is trained, the always-PAD ones included: a generated block is the
    next block's input and the action query's, whatever the loss cares about; the scores and
    actions weigh most; the frames-off ablation zeroes the frame cells only."""
    weights = np.array(Codec("breakout").cell_weights())
    assert (weights[10] > 0).all() and (weights[:10] == 1).all()
    assert (weights[10, :COL_END] == weights[10, 0]).all() and weights[10, COL_ACTION] > weights[10, COL_END]
    no_frames = np.array(Codec("breakout").cell_weights(frame=0.0))
    assert (no_frames[:10] == 0).all() and np.array_equal(no_frames[10], weights[10])
    spec = MinAtarDataModule(game="breakout", action_weight=500.0, frame_weight=0.0).spec
    w = np.array(spec.step_cell_weights)
    assert (w[:10] == 0).all() and w[10, 0] == w[10, COL_DECISION] == 500.0 and w[10, COL_END] == 5.0
    with pytest.raises(ValueError, match="frame_weight"):
        MinAtarDataModule(game="breakout", frame_weight=-1.0)


TINY_MINATAR = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.log_every_n_steps", "1", "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.n_train", "2", "--data.init_args.max_episode_steps", "20",
    "--data.init_args.n_heldout", "2", "--data.init_args.n_train_envs", "1",
    "--data.init_args.n_val_envs", "1",
    "--data.init_args.batch_size", "4", "--data.init_args.workers", "1",
    "--data.init_args.expert", "{simulations: 6, pv_depth: 2}",
    "--data.init_args.network", "{total_steps: 512, n_envs: 4, n_steps: 32, minibatches: 2, epochs: 1}",
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
        assert len(values["heldout/procedure_acc"]) == len(values["heldout/return"]), "at every evaluation"
    assert list((tmp_path / "data").glob("minatar-train-*.pt"))
    assert list((tmp_path / "data").glob("minatar-net-breakout-*.pt")), "the tiny fit trains the search's network"
