"""The sweep domain: deterministic physics, an expert that solves its tables, a codec that
round-trips within the stated binning error, bowls that hold, a fit through the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from pc_lightning.domains.sweep import SweepDataModule
from pc_lightning.domains.sweep.codec import BOTH, EFFECTOR, FULL_EFFECTOR, PARTICLE, Codec, split_tokens
from pc_lightning.domains.sweep.env import SweepConfig, SweepEnv
from pc_lightning.domains.sweep.expert import AT_GOAL, MOVES, SPEED, UNREACHED, SweepExpert, to_level
from pc_lightning.domains.sweep.suite import SweepSuite, particle_count

CFG = SweepConfig()
TINY_SWEEP = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.max_time", "null",
    "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1",
    "--model.d_model", "16", "--model.n_heads", "2", "--model.d_ff", "32",
    "--data.init_args.n_train", "2", "--data.init_args.n_val", "1",
    "--data.init_args.n_val_envs", "2", "--data.init_args.n_heldout", "2",
    "--data.init_args.n_train_envs", "1", "--data.init_args.batch_size", "4", "--data.init_args.workers", "1",
    "--data.init_args.table", '{"max_steps": 6}',
]


def test_physics_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    commands = rng.uniform(-4, 4, (40, 2, 2))
    runs = []
    for _ in range(2):
        env = SweepEnv(7, 8)
        trace = []
        for c in commands:
            env.step(c)
            trace.append(np.concatenate([env.particle_positions().ravel(), env.effector_positions().ravel()]))
        runs.append(np.array(trace))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(SweepEnv(8, 8).particle_positions(), SweepEnv(7, 8).particle_positions())


@pytest.mark.parametrize("counts,first_seed", [((4, 8), 0), ((4, 8), 2_000_000), ((10, 12), 3_000_000)])
def test_the_expert_solves_its_tables(counts, first_seed):
    """Training-range tables, held-out ones and the shifted counts: at least 95% solved (all of 12 here)."""
    suite = SweepSuite(list(range(first_seed, first_seed + 12)), counts, CFG, Codec(CFG), n_bins=9)
    stats = suite.expert_stats()
    assert stats["success_rate"] >= 0.95, stats
    assert stats["episode_length"] < CFG.max_steps / 2


def test_a_particle_in_a_bowl_stays_in():
    env = SweepEnv(3, 6)
    expert = SweepExpert(CFG, env.bowls)
    held: dict[int, np.ndarray] = {}
    while not env.done:
        env.step(expert.plan(*expert.observe(env)).command)
        for i in np.flatnonzero(env.captured):
            held.setdefault(int(i), env.particle_positions()[i].copy())
            assert np.array_equal(env.particle_positions()[i], held[int(i)])
    assert env.solved
    for _ in range(30):  # drive both effectors back and forth across the bowls: nothing comes out
        env.step(np.array([[4.0, 4.0], [-4.0, -4.0]]) * np.sign(np.sin(env.steps)))
        assert env.captured.all() and all(np.array_equal(env.particle_positions()[i], p) for i, p in held.items())


def test_codec_round_trip_within_the_binning_error():
    codec = Codec(CFG)
    env = SweepEnv(5, 8)
    expert = SweepExpert(CFG, env.bowls, n_bins=9)
    for _ in range(12):
        pos, eff, carrying = expert.observe(env)
        plan = expert.plan(pos, eff, carrying)
        state = codec.encode_state(env)
        # the grid shows every free particle and effector at its level (cell and quarter)
        for k, e in enumerate(to_level(eff)):
            base = FULL_EFFECTOR if carrying[k] >= 0 else EFFECTOR
            assert state[e[1] // 2, e[0] // 2] == base + 4 * k + 2 * (e[1] % 2) + e[0] % 2
        loose = [i for i in range(len(pos)) if i not in carrying]
        for p in to_level(pos[loose]):
            assert state[p[1] // 2, p[0] // 2] == PARTICLE + 2 * (p[1] % 2) + p[0] % 2
        blocks = codec.encode_procedure(plan)
        assert blocks.shape == (plan.rounds + 1, 16, 16) and blocks.max() < codec.step_vocab
        m = split_tokens(blocks)  # (L+1, S, S, 2)
        # x_0: the sources alone, flood 0 the particles the grid shows, flood 1 the bowls' centres
        shown = (state >= PARTICLE) & (state < PARTICLE + 4)
        assert np.array_equal(m[0, ..., 0] == AT_GOAL, shown) and (m[0] <= AT_GOAL).all()
        bowls = np.zeros_like(shown)
        bowls[np.floor(env.bowls[:, 1]).astype(int), np.floor(env.bowls[:, 0]).astype(int)] = True
        assert np.array_equal(m[0, ..., 1] == AT_GOAL, bowls)
        for f in range(2):  # then each round keeps what the one before reached
            for l in range(1, len(blocks)):
                before = m[l - 1, ..., f] != UNREACHED
                assert np.array_equal(m[l, ..., f][before], m[l - 1, ..., f][before])
        assert codec.stop_fn(torch.from_numpy(np.repeat(state[None], len(blocks), 0)),
                             torch.from_numpy(blocks)).tolist() == [False] * plan.rounds + [True]
        # the action is the one read from the last block at the effectors' cells
        assert np.array_equal(codec.action_of(state, blocks[-1], 9), plan.action)
        # and decodes to the bin centres, within half a bin of the unbinned command
        v = np.zeros((2, 2))
        for k, (x, y) in enumerate(plan.cells):
            t = m[-1, y, x, int(plan.full[k])]  # an empty spatula follows flood 0, a full one flood 1
            v[k] = SPEED * np.array(MOVES[t - 2]) if t >= 2 else 0.0
        decoded = expert.bins.decode(plan.action).reshape(2, 2)
        assert np.array_equal(decoded, plan.command)
        assert (np.abs(decoded - v).ravel() <= expert.bins.max_error + 1e-9).all()
        env.step(plan.command)


def test_the_flood_is_a_breadth_first_search():
    """On the open table a flood's round is the king-move distance to the nearest source,
    the border is never reached, and every reached cell moves onto a cell one round earlier."""
    expert = SweepExpert(CFG, np.array([[4.5, 4.5], [11.5, 11.5]]))
    dist, move = expert.flood(np.array([[8, 8], [3, 12]]))
    ys, xs = np.mgrid[0:16, 0:16]
    inner = (ys > 0) & (ys < 15) & (xs > 0) & (xs < 15)
    near = np.minimum(np.maximum(abs(xs - 8), abs(ys - 8)), np.maximum(abs(xs - 3), abs(ys - 12)))
    assert np.array_equal(dist[inner], near[inner])
    assert (dist[~inner] == -1).all() and move[8, 8] == move[12, 3] == AT_GOAL
    for y, x in np.argwhere(dist > 0):
        dx, dy = MOVES[move[y, x] - 2]
        assert dist[y + dy, x + dx] == dist[y, x] - 1
    dist, _ = expert.flood(np.array([[8, 8]]), also=np.array([[15, 4]]))  # a spatula at the wall
    assert dist[4, 15] == 7 and dist[4, 0] == -1


def test_two_spatulas_in_one_cell_are_both_shown():
    codec = Codec(CFG)
    env = SweepEnv(1, 4)
    for body in env.effectors:
        body.position = (6.3, 6.8)
    state = codec.encode_state(env)
    assert state[6, 6] == BOTH + 2  # both empty, effector 0 in the cell's lower left quarter
    assert codec.effector_cells(state) == [((6, 6), 0), ((6, 6), 0)]


def test_splits_come_from_disjoint_seeds():
    dm = SweepDataModule(n_train=5, n_val_envs=3, n_heldout=3, n_train_envs=2)
    suites = dm.eval_suites()
    train = set(dm.seeds("train", 5))
    seen: set[int] = set()
    for name in ("val_envs", "heldout", "heldout_shift"):
        seeds = set(suites[name].seeds)
        assert not seeds & train and not seeds & seen, name
        seen |= seeds
    assert set(suites["train_envs"].seeds) <= train
    assert all(10 <= particle_count(s, (10, 12)) <= 12 for s in suites["heldout_shift"].seeds)
    with pytest.raises(ValueError, match="shift_particles"):
        SweepDataModule(shift_particles=(10, 14))
    with pytest.raises(ValueError, match=r"data\.init_args\.seed: seed 100 with 5 train environments runs past"):
        SweepDataModule(n_train=5, seed=100).seeds("train", 5)


@pytest.mark.slow
def test_a_tiny_fit_through_the_cli(tmp_path):
    proc = run_cli(["fit", "--config", "conf/sweep.yaml", *TINY_SWEEP], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpts = sorted(p.name for p in (tmp_path / "runs").rglob("*.ckpt"))
    assert "best.ckpt" in ckpts and "last.ckpt" in ckpts
    # the fit validates on val_envs alone; the chosen checkpoint is then run on the test suites
    import json

    (selected,) = (tmp_path / "runs").rglob("selected.json")
    summary = json.loads(selected.read_text())
    assert summary["monitor"] == "val_envs/fraction_in_bowls" and summary["step"] in (2, 4)
    assert Path(summary["checkpoint"]).name == "best.ckpt"
    assert {"heldout", "heldout_shift", "train_envs"} == {k.split("/")[0] for k in summary["results"]}
    assert "the checkpoint chosen on val_envs/fraction_in_bowls" in proc.stderr + proc.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pc_lightning.logs import scalars

    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("events.out.tfevents.*") if "test" not in p.parts}
    # selected.json holds what TensorBoard shows, at the x of the validation that chose the checkpoint
    assert scalars(run_dir, "heldout/fraction_in_bowls") == [
        (summary["step"] - 1, pytest.approx(summary["results"]["heldout/fraction_in_bowls"], rel=1e-6))]
    assert "heldout/episode_model_left_expert_right" in EventAccumulator(str(run_dir)).Reload().Tags()["images"]


@pytest.mark.slow
def test_the_chosen_checkpoint_is_tested_under_ddp(tmp_path):
    """Two CPU processes: each runs its share of the test suites on the chosen checkpoint
    at the end of the fit, and the numbers are logged once, at the x of its validation."""
    proc = run_cli(["fit", "--config", "conf/sweep.yaml", *TINY_SWEEP, "--trainer.devices", "2",
                    "--trainer.strategy", "ddp"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (selected,) = (tmp_path / "runs").rglob("selected.json")
    summary = json.loads(selected.read_text())
    acc = EventAccumulator(str(selected.parent))
    acc.Reload()
    held = acc.Scalars("heldout/fraction_in_bowls")
    assert [e.step for e in held] == [summary["step"] - 1]
    assert held[0].value == pytest.approx(summary["results"]["heldout/fraction_in_bowls"])
    assert len(acc.Scalars("val_envs/fraction_in_bowls")) == 2


@pytest.mark.parametrize("t", range(8))
def test_a_symmetry_moves_state_procedure_and_action_together(t):
    """After any of the 8 symmetries, the floods are still breadth-first searches, the action
    is still read from the last block at the effectors' cells, and the velocity bins are the
    transformed command's."""
    from pc_lightning.domains.sweep.codec import DihedralAugment

    codec = Codec(CFG)
    env = SweepEnv(4, 7)
    expert = SweepExpert(CFG, env.bowls, n_bins=9)
    for _ in range(5):
        env.step(expert.plan(*expert.observe(env)).command)
    plan = expert.plan(*expert.observe(env))
    state, steps = codec.encode_state(env), codec.encode_procedure(plan)

    class Fixed:
        def integers(self, n):
            return t

    s2, x2, a2 = DihedralAugment(codec, 9)(state, steps, plan.action, Fixed())
    # the grid's particles and effectors moved with their cells; the floods with them:
    # each reached cell still moves onto a cell of the round before (a BFS up to ties)
    assert sorted(np.bincount(s2.ravel(), minlength=39)) == sorted(np.bincount(state.ravel(), minlength=39))
    m = split_tokens(x2)
    for k in range(2):
        first = np.where((m[..., k] != UNREACHED).any(0), (m[..., k] != UNREACHED).argmax(0), -1)
        for y, x in np.argwhere(first > 0):
            dx, dy = MOVES[m[-1, y, x, k] - 2]
            assert first[y + dy, x + dx] == first[y, x] - 1
    # the action is still the move at each effector's cell, and the transformed command
    assert np.array_equal(codec.action_of(s2, x2[-1], 9), a2)
    v = expert.bins.decode(plan.action).reshape(2, 2)
    if t & 4:
        v = v[:, ::-1]
    v = v * np.array([-1 if t & 1 else 1, -1 if t & 2 else 1])
    assert np.allclose(expert.bins.decode(a2).reshape(2, 2), v)
