"""Per-kind block shapes (a state grid unlike the step grid, x_0 from a start block) and
action blocks (D tokens, each over its own bins): the equalities every model keeps, and a
toy domain with a 2-D continuous action that trains and decodes to the right bins (within half a bin)."""

import numpy as np
import pytest
import torch

from pc_lightning.data import IGNORE, ProcedureDataset, ProcedureRecords, TokenSpec, UniformBins, collate
from pc_lightning.model import ProcedureCloner
from pc_lightning.model.generate import act_from_state, generate
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig

STEP = (6, 5)  # steps: one row more than the 5 x 5 state (MinAtar's frame and its side row)


def make(window, state_vocab=4, step_shape=STEP, action_vocab=4, **kw):
    torch.manual_seed(0)
    cfg = TransformerConfig(state_vocab=state_vocab, step_vocab=6, action_vocab=action_vocab, d_model=16, n_heads=2,
                            n_layers=2, d_ff=32, window=window, step_shape=step_shape, **kw)
    return ProcedureTransformer(cfg).eval()


def states(b=4, shape=(5, 5)):
    return torch.randint(0, 4, (b, *shape), generator=torch.Generator().manual_seed(1))


def with_start(net, steps):
    """[START, x_0 .. x_n]: what the data serves where steps have their own shape."""
    return torch.cat([net.start_block(len(steps), *steps.shape[-2:], steps.device)[:, None], steps], 1)


@pytest.mark.parametrize("window,patch,bits,state_shape", [
    (1, (1, 1), 0, (5, 5)), (2, (1, 1), 0, (5, 5)), (None, (1, 1), 0, (5, 5)), (1, (1, 5), 2, (5, 5)),
    (2, (2, 2), 0, (5, 5)), (1, (1, 1), 0, (7, 3)), (2, (1, 1), 0, (7, 3))])
def test_cached_generation_equals_full_forward_with_a_start_block(window, patch, bits, state_shape):
    """Generation (state pass, start block, then one pass per step block with cached
    keys/values) gives what the teacher-forced pass over [START, x_0 .. x_n] gives, for a
    state smaller than the steps (5 x 5 under 6 x 5) and one that overhangs them (7 x 3)."""
    net = make(window, patch=patch, step_bits=bits)
    state = states(shape=state_shape)
    gen = generate(net, state, max_steps=6)
    assert gen.steps.shape[-2:] == STEP and gen.actions.shape == (4, 1)
    for i in range(4):
        n = int(gen.lengths[i])
        steps = with_start(net, gen.steps[i : i + 1, :n])
        assert (steps[:, 1:] >= 0).all()
        x_out, a_logits = net(state[i : i + 1], steps, action_host=torch.tensor([n]))
        for l in range(n):  # block l (START, x_0, ...) predicts x_l
            assert (x_out[0, l].argmax(-1).reshape(STEP) == steps[0, l + 1]).all()
        assert torch.allclose(a_logits[0], gen.action_logits[i], atol=1e-4)
        assert torch.equal(gen.actions[i], a_logits[0].argmax(-1))


def test_rollout_reuse_with_a_start_block():
    """A chain generated before under the same state resumes to exactly the same result."""
    net = make(1)
    state = states()
    gen = generate(net, state, max_steps=6)
    again = generate(net, state, max_steps=6, prefixes=gen.chains)
    assert torch.allclose(again.action_logits, gen.action_logits, atol=1e-5)
    assert torch.equal(again.lengths, gen.lengths) and torch.equal(again.steps, gen.steps)
    assert again.forward_blocks < gen.forward_blocks


def test_step_cells_see_the_state_cell_at_their_coordinates():
    """A step cell's context embedding is the state cell at the same coordinates; step cells
    beyond the state's grid see "no cell", and state cells beyond the step grid only attend."""
    net = make(1)
    state = states(b=1)
    cells = net.context_cells(state, *STEP)
    assert torch.equal(cells[:, :5], state) and (cells[:, 5] == net.cfg.state_vocab).all()
    assert torch.equal(net.context_cells(states(b=1, shape=(7, 3)), 2, 2), states(b=1, shape=(7, 3))[:, :2, :2])


@pytest.mark.parametrize("window,n_layers", [(1, 2), (2, 2), (3, 1)])
def test_chunks_with_a_start_block_predict_what_the_full_sequence_predicts(window, n_layers):
    rng = np.random.default_rng(0)
    lengths = (7, 3, 1)
    recs = ProcedureRecords.from_lists([rng.integers(0, 4, (5, 5)) for _ in lengths],
                                       [rng.integers(0, 6, (n, *STEP)) for n in lengths], [1, 2, 3], [0, 0, 1])
    torch.manual_seed(0)
    net = ProcedureTransformer(TransformerConfig(4, 6, 4, d_model=16, n_heads=2, n_layers=n_layers, d_ff=32,
                                                 window=window, step_shape=STEP)).eval()
    ds = ProcedureDataset(recs, "pc", chunk_blocks=2, context_blocks=(window - 1) * n_layers,
                          start_token=net.cfg.start_token)
    covered = {i: set() for i in range(len(recs))}
    for idx, (i, j) in enumerate(ds.items):
        full = with_start(net, recs.procedure(i).long()[None])
        x_full, a_full = net(recs.states[i].long()[None], full, action_host=torch.tensor([full.shape[1] - 1]))
        b = collate([ds[idx]])
        x, a = net(b["state"], b["steps"], b["step_valid"], b["action_host"], b["step_segment"])
        assert torch.allclose(a[0], a_full[0], atol=1e-5)
        lo = max(0, j - ds.context_blocks)
        for k in range(b["steps"].shape[1]):
            if (b["targets"][0, k] != IGNORE).any():
                assert torch.allclose(x[0, k], x_full[0, lo + k], atol=1e-5)
                covered[i].add(lo + k)
    for i, n in enumerate(lengths):  # START and every block with a successor, trained exactly once
        assert covered[i] == set(range(n))


def test_an_action_block_has_a_token_per_dimension_over_its_own_bins():
    net = make(1, action_vocab=(3, 5))
    state = states()
    logits = act_from_state(net, state)
    assert logits.shape == (4, 2, 5)
    assert torch.isinf(logits[:, 0, 3:]).all() and torch.isfinite(logits[:, 0, :3]).all()
    assert torch.isfinite(logits[:, 1]).all()
    gen = generate(net, state, max_steps=4)
    assert gen.actions.shape == (4, 2) and (gen.actions[:, 0] < 3).all()
    with pytest.raises(ValueError, match="action_vocab"):
        TokenSpec(4, 6, [3, 0])


def test_bins_round_trip_within_half_a_bin():
    bins = UniformBins(low=(-1.0, 0.0), high=(1.0, 2.0), n=(8, 4))
    x = np.random.default_rng(0).uniform([-1, 0], [1, 2], (1000, 2))
    ids = bins.encode(x)
    assert ids.min() >= 0 and (ids < np.array([8, 4])).all()
    assert (np.abs(bins.decode(ids) - x) <= bins.max_error + 1e-12).all()
    assert np.allclose(bins.decode([[0, 0]]), [[-0.875, 0.25]])
    assert bins.encode([[5.0, -3.0]]).tolist() == [[7, 0]]  # outside the range: the edge bins


# ---------------------------------------------------------------- a toy domain, trained
LEVELS, BINS = 16, 8  # a state shows each coordinate at 16 levels; the action has 8 bins per dimension
ACTION_BINS = UniformBins(low=(-1.0, -1.0), high=(1.0, 1.0), n=(BINS, BINS))


def toy_records(n: int, seed: int) -> tuple[ProcedureRecords, np.ndarray]:
    """A 2-D continuous target (u, v) in [-1, 1]^2 drawn as two tokens at random cells of a
    4 x 4 grid (u as 1..16, v as 17..32, by level); the expert's procedure x_0 (1 x 2 cells)
    is the two tokens it located, its action (u, v) binned per dimension."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, (n, 2))
    levels = np.minimum(((uv + 1) / 2 * LEVELS).astype(int), LEVELS - 1)
    states, procs = [], []
    for (lu, lv) in levels:
        s = np.zeros((4, 4), dtype=np.int64)
        a, b = rng.choice(16, 2, replace=False)
        s.flat[a], s.flat[b] = 1 + lu, 1 + LEVELS + lv
        states.append(s)
        procs.append(np.array([[[1 + lu, 1 + LEVELS + lv]]]))
    return ProcedureRecords.from_lists(states, procs, ACTION_BINS.encode(uv).tolist(), list(range(n))), uv


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["pc", "bc"])
def test_a_continuous_2d_action_trains_and_decodes_to_the_right_bins(variant):
    spec = TokenSpec(state_vocab=1 + 2 * LEVELS, step_vocab=1 + 2 * LEVELS, action_vocab=ACTION_BINS.vocab,
                     step_shape=[1, 2])
    torch.manual_seed(0)
    module = ProcedureCloner(variant, spec, d_model=32, n_heads=2, n_layers=2, d_ff=64, lr=3e-3, warmup_steps=10,
                             decay_steps=300)
    train, _ = toy_records(512, seed=0)
    ds = ProcedureDataset(train, variant, start_token=spec.start_token)
    opt = module.configure_optimizers()
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate)
    module.train()
    batches = (b for _ in range(1000) for b in loader)
    for _ in range(300):
        loss = module._losses(next(batches))["loss"]
        opt["optimizer"].zero_grad()
        loss.backward()
        opt["optimizer"].step()
        opt["lr_scheduler"]["scheduler"].step()
    module.eval()
    test, uv = toy_records(200, seed=1)
    actions, gen = module.act(test.states.long(), max_procedure_steps=1)
    assert actions.shape == (200, 2)
    decoded = ACTION_BINS.decode(actions.numpy())
    within = (np.abs(decoded - uv) <= ACTION_BINS.max_error + 1e-9).all(1)
    assert within.mean() >= 0.9, within.mean()  # the right bin: off by at most half a bin
    if variant == "pc":
        assert (gen.steps[:, 0] == test.steps.long()).all(-1).all(-1).float().mean() >= 0.9  # x_0 located
