from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pc_lightning.domains.maze import MazeDataModule
from pc_lightning.domains.maze.suite import MazeSuite
from pc_lightning.eval import BestCheckpoint, HeldOutEvaluation, PolicyWithMemory, procedure_accuracy, run_episodes
from pc_lightning.model import ProcedureCloner


def recorded(policy):
    log = []

    def act(obs, idx):
        a = policy(obs, idx)
        log.append((idx.copy(), a.clone()))
        return a

    return act, log


def test_reusing_procedures_changes_nothing_but_the_cost():
    torch.manual_seed(3)  # an untrained model whose procedures run long (below), so that reuse has work to save
    model = ProcedureCloner(spec=MazeDataModule().spec, d_model=16, n_heads=2, d_ff=32).eval()
    suite = MazeSuite([2_000_000, 2_000_001], 7, 0.1, episodes_per_maze=3, episode_seed=1)
    first = model.generate_procedure(torch.from_numpy(suite.episodes().observe(np.arange(len(suite)))).long(),
                                     suite.stop_fn, suite.max_procedure_steps)
    assert first.lengths.float().mean() > 10
    runs = {}
    for reuse in (True, False):
        policy = PolicyWithMemory(model, len(suite), suite.stop_fn, suite.max_procedure_steps, reuse=reuse)
        act, log = recorded(policy)
        stats = run_episodes(suite.episodes(), act)
        runs[reuse] = (stats, log, policy.forward_blocks)
    (s1, log1, cost1), (s2, log2, cost2) = runs[True], runs[False]
    assert len(log1) == len(log2)
    for (i1, a1), (i2, a2) in zip(log1, log2):
        assert (i1 == i2).all() and torch.equal(a1, a2)
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert cost1 < cost2 / 2  # and it does save work


def test_stepping_episodes_in_chunks_changes_nothing():
    """Issue 14, fault 6: ``max_batch`` bounds a rollout's memory; the episodes do the same."""
    torch.manual_seed(0)
    model = ProcedureCloner(spec=MazeDataModule().spec, d_model=16, n_heads=2, d_ff=32).eval()
    suite = MazeSuite([2_000_000, 2_000_001, 2_000_002], 7, 0.1, episodes_per_maze=3, episode_seed=1)
    runs = {}
    for max_batch in (None, 2):
        policy = PolicyWithMemory(model, len(suite), suite.stop_fn, suite.max_procedure_steps)
        act, log = recorded(policy)
        stats = run_episodes(suite.episodes(), act, max_batch=max_batch)
        calls = [len(i) for i, _ in log]
        assert max_batch is None or max(calls) <= max_batch
        runs[max_batch] = (stats, np.concatenate([i for i, _ in log]), torch.cat([a for _, a in log]),
                           policy.forward_blocks, [len(c.blocks) for c in policy.chains])
    (s1, i1, a1, c1, l1), (s2, i2, a2, c2, l2) = runs[None], runs[2]
    assert np.array_equal(i1, i2) and torch.equal(a1, a2)  # the same actions, episode by episode
    assert all(np.array_equal(s1[k], s2[k]) for k in s1) and c1 == c2 and l1 == l2


def test_an_expert_policy_solves_every_episode():
    suite = MazeSuite([2_000_000, 2_000_001], 10, 0.1, episodes_per_maze=4, episode_seed=1)
    episodes = suite.episodes()
    from pc_lightning.domains.maze.codec import AGENT, GOAL, WALL
    from pc_lightning.domains.maze.expert import bfs_procedure

    def expert(obs, idx):
        acts = []
        for s in obs.numpy():
            _, a = bfs_procedure(s == WALL, np.argwhere(s == GOAL)[0], np.argwhere(s == AGENT)[0])
            acts.append(a)
        return torch.tensor(acts)

    stats = run_episodes(episodes, expert)
    assert stats["success_rate"].mean() == 1.0
    assert np.allclose(stats["path_ratio"], 1.0)


def test_suites_selects_rollout_suites_by_name():
    dm = MazeDataModule(size=10, n_train=2, suites=["heldout"])
    assert list(dm.selected_suites()) == ["heldout"]
    assert set(MazeDataModule(size=10, n_train=2).selected_suites()) == {"val_envs", "heldout", "train_envs"}
    with pytest.raises(ValueError, match=r"data.init_args.suites: \['held_out'\]"):
        MazeDataModule(size=10, suites=["held_out"]).selected_suites()
    trainer = SimpleNamespace(datamodule=MazeDataModule(size=10, n_train=2))
    with pytest.raises(ValueError, match=r"fit_suites: \['val'\] not among"):
        HeldOutEvaluation(fit_suites=["val"]).setup(trainer, None, "fit")
    HeldOutEvaluation(fit_suites=["val_envs"]).setup(trainer, None, "fit")
    # a test of the same config may select other suites: fit_suites only concerns a fit
    trainer.datamodule = MazeDataModule(size=10, n_train=2, suites=["heldout"])
    HeldOutEvaluation(fit_suites=["val_envs"]).setup(trainer, None, "test")


def test_evaluation_and_best_checkpoint_take_what_the_config_leaves_out_from_the_domain():
    class Declared(MazeDataModule):
        selection_metric, fit_suites, n_probes = "path_ratio", ("val_envs",), 3

    trainer = SimpleNamespace(datamodule=Declared(size=10, n_train=2))
    evaluation = HeldOutEvaluation()
    evaluation.setup(trainer, None, "fit")
    assert (evaluation.fit_suites, evaluation.n_probes) == (["val_envs"], 3)
    given = HeldOutEvaluation(fit_suites=["val_envs", "heldout"], n_probes=0)
    given.setup(trainer, None, "fit")
    assert (given.fit_suites, given.n_probes) == (["val_envs", "heldout"], 0)
    plain = HeldOutEvaluation()
    plain.setup(SimpleNamespace(datamodule=MazeDataModule(size=10, n_train=2)), None, "fit")
    assert (plain.fit_suites, plain.n_probes) == (None, 16)  # the maze: every suite at each validation
    assert BestCheckpoint().resolve_monitor(trainer.datamodule) == "val_envs/path_ratio"
    assert BestCheckpoint(monitor="val_envs/x").resolve_monitor(trainer.datamodule) == "val_envs/x"
    # the key its state is saved under is a plain ModelCheckpoint's: older runs resume with their best score
    plain_best = ModelCheckpoint(monitor="val_envs/path_ratio", mode="max", filename="best")
    best = BestCheckpoint()
    best.resolve_monitor(trainer.datamodule)
    assert best.state_key == plain_best.state_key


def test_procedure_accuracy_counts_exact_steps():
    expert = [np.zeros((3, 2, 2), dtype=np.uint8)]
    gen = torch.zeros(1, 4, 2, 2, dtype=torch.long)
    gen[0, 1, 0, 0] = 1
    assert procedure_accuracy(expert, gen, torch.tensor([4]))[0] == 2 / 3
    assert procedure_accuracy(expert, gen, torch.tensor([1]))[0] == 1 / 3
    assert procedure_accuracy(expert, gen, torch.tensor([0]))[0] == 0.0  # nothing generated
    assert np.isnan(procedure_accuracy([expert[0][:0]], gen, torch.tensor([4]))[0])  # no expert step
    ties = lambda x, g: np.ones(len(x), dtype=bool)  # a match rule replaces exact equality
    assert procedure_accuracy(expert, gen, torch.tensor([2]), ties)[0] == 2 / 3
