import numpy as np
import pytest
import torch

from pc_lightning.data import IGNORE, ProcedureDataset, ProcedureRecords, collate
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig


def records(lengths=(7, 3, 1)):
    rng = np.random.default_rng(0)
    states = [rng.integers(0, 4, (4, 4)) for _ in lengths]
    procs = [rng.integers(0, 6, (n, 4, 4)) for n in lengths]
    return ProcedureRecords.from_lists(states, procs, [1, 2, 3], [0, 0, 1])


def test_records_save_load(tmp_path):
    r = records()
    r.save(tmp_path / "r.pt")
    r2 = ProcedureRecords.load(tmp_path / "r.pt")
    assert all(torch.equal(getattr(r, k), getattr(r2, k)) for k in r.__dict__ if k != "meta")
    assert r2.meta == r.meta
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left behind


def test_records_keep_token_ids_above_255(tmp_path):
    """MinAtar Seaquest frames use token ids up to 1023: they must not wrap in storage."""
    state = np.full((2, 3), 1000)
    steps = np.array([[[1040, 0, 255], [256, 7, 1]]])
    r = ProcedureRecords.from_lists([state], [steps], [1], [0], meta={"expert_return": 2.5})
    r.save(tmp_path / "r.pt")
    r2 = ProcedureRecords.load(tmp_path / "r.pt")
    assert r2.states[0].tolist() == state.tolist() and r2.procedure(0).tolist() == steps.tolist()
    assert r2.meta == {"expert_return": 2.5}
    small = ProcedureRecords.from_lists([np.zeros((2, 3))], [np.ones((1, 2, 3))], [0], [0])
    assert small.states.dtype == torch.uint8


def test_records_of_jobs_concatenate_in_job_order():
    rng = np.random.default_rng(1)
    parts = [{"states": [rng.integers(0, 4, (4, 4)) for _ in range(n)],
              "procedures": [rng.integers(0, 6, (k + 1, 4, 4)) for k in range(n)],
              "actions": list(range(n)), "groups": [g] * n, "return": 1.0} for g, n in enumerate((2, 0, 3))]
    joined = ProcedureRecords.concat(parts, meta={"m": 1})
    flat = ProcedureRecords.from_lists(*([x for p in parts for x in p[k]] for k in
                                         ("states", "procedures", "actions", "groups")), meta={"m": 1})
    assert len(joined) == 5 and joined.groups.tolist() == [0, 0, 2, 2, 2] and joined.meta == {"m": 1}
    assert all(torch.equal(getattr(joined, k), getattr(flat, k)) for k in ("states", "steps", "offsets", "actions"))
    with pytest.raises(ValueError, match="no expert records"):
        ProcedureRecords.concat([parts[1]])


@pytest.mark.parametrize("window,n_layers", [(1, 2), (2, 2), (3, 1)])
def test_chunks_predict_exactly_what_the_full_sequence_predicts(window, n_layers):
    r = records()
    torch.manual_seed(0)
    net = ProcedureTransformer(TransformerConfig(4, 6, 4, d_model=16, n_heads=2, n_layers=n_layers, d_ff=32,
                                                 window=window)).eval()
    ds = ProcedureDataset(r, "pc", chunk_blocks=2, context_blocks=(window - 1) * n_layers, start_token=6)
    full = {}
    for i in range(len(r)):
        steps = torch.cat([torch.full((1, 4, 4), 6), r.procedure(i).long()])[None]  # [START, x_0 .. x_L]
        x, a = net(r.states[i].long()[None], steps, action_host=torch.tensor([len(steps[0]) - 1]))
        full[i] = (x[0], a[0])
    covered = {i: set() for i in range(len(r))}
    for idx, (i, j) in enumerate(ds.items):
        b = collate([ds[idx]])
        x, a = net(b["state"], b["steps"], b["step_valid"], b["action_host"], b["step_segment"])
        assert torch.allclose(a[0], full[i][1], atol=1e-5)
        lo = max(0, j - ds.context_blocks)
        for k in range(b["steps"].shape[1]):
            if (b["targets"][0, k] != IGNORE).any():
                assert torch.allclose(x[0, k], full[i][0][lo + k], atol=1e-5)
                covered[i].add(lo + k)
    for i in range(len(r)):  # every block that has a successor (START, x_0 .. x_L-1) is trained exactly once
        assert covered[i] == set(range(len(r.procedure(i))))


def test_bc_examples_hold_no_procedure():
    ds = ProcedureDataset(records(), "bc", start_token=6)
    assert len(ds) == 3
    b = collate([ds[0], ds[1]])
    assert b["steps"].shape[1] == 0 and (b["action_host"] == -1).all()


def test_aux_bc_hosts_the_action_at_the_state():
    ds = ProcedureDataset(records(), "aux_bc", chunk_blocks=3, start_token=6)
    for idx in range(len(ds)):
        e = ds[idx]
        assert e["action_host"] == -1 and e["action"] != IGNORE


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant"):
        ProcedureDataset(records(), "dagger", start_token=6)


@pytest.mark.slow
def test_maze_data_is_cached_by_hash_and_parallel_equals_serial(tmp_path):
    from pc_lightning.domains.maze import MazeDataModule

    kw = dict(size=7, n_train=3, train_episodes=2, n_val=1, val_episodes=1)
    serial = MazeDataModule(data_dir=str(tmp_path / "a"), **kw)
    serial.prepare_data()
    parallel = MazeDataModule(data_dir=str(tmp_path / "b"), workers=2, **kw)
    parallel.prepare_data()
    assert serial.cache_path("train").name == parallel.cache_path("train").name  # workers do not change the data
    a, b = ProcedureRecords.load(serial.cache_path("train")), ProcedureRecords.load(parallel.cache_path("train"))
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in a.__dict__ if k != "meta") and a.meta == b.meta
    other = MazeDataModule(data_dir=str(tmp_path / "a"), **{**kw, "train_episodes": 3})
    assert other.cache_path("train") != serial.cache_path("train")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [serial.cache_path("train").name, serial.cache_path("val").name])


def test_a_corrupted_cache_is_named_and_generated_again(tmp_path):
    """A truncated cache file is not a crash about checkpoints: a warning names the file and
    the data is generated again, the same as before."""
    from pc_lightning.domains.maze import MazeDataModule

    kw = dict(size=7, n_train=2, train_episodes=1, n_val=1, val_episodes=1,
              data_dir=str(tmp_path))
    first = MazeDataModule(**kw)
    first.prepare_data()
    first.setup()
    path = first.cache_path("train")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    again = MazeDataModule(**kw)
    with pytest.warns(UserWarning, match=str(path.name)):
        again.prepare_data()
    again.setup()
    assert torch.equal(again.records["train"].states, first.records["train"].states)
    path.write_bytes(b"not a cache")  # a setup() without prepare_data() mends it too
    with pytest.warns(UserWarning, match="cannot be read"):
        MazeDataModule(**kw).setup()
