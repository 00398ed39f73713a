"""ProcedureCloner's procedure loss: plain mean, per-cell weights, changed-token weight, bit head."""

import pytest
import torch
import torch.nn.functional as F

from pc_lightning.spec import IGNORE, TokenSpec
from pc_lightning.model import ProcedureCloner


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, k, h, w = 3, 2, 2, 3
    steps = torch.randint(0, 5, (b, k, h, w), generator=g)
    steps[:2, 0] = 5  # two examples start with the start block (the spec's start token, step_vocab 5)
    targets = torch.randint(0, 5, (b, k, h, w), generator=g)
    targets[0, 1] = IGNORE  # a block without targets
    return {"state": torch.randint(0, 4, (b, h, w), generator=g), "steps": steps, "targets": targets,
            "step_valid": torch.ones(b, k, dtype=torch.bool), "step_segment": torch.zeros(b, k, dtype=torch.long),
            "action": torch.tensor([0, 1, 2]), "action_host": torch.tensor([1, 1, 1])}


def model(**kw) -> ProcedureCloner:
    torch.manual_seed(0)
    spec = kw.pop("spec", TokenSpec(4, 5, 3))
    return ProcedureCloner(variant="pc", spec=spec, d_model=16, n_heads=2, n_layers=1, d_ff=16, **kw)


def reference(m: ProcedureCloner, b: dict, weight_fn) -> torch.Tensor:
    """The weighted mean cross-entropy computed cell by cell, independently of the module."""
    stl, _ = m.net(b["state"], b["steps"], b["step_valid"], b["action_host"], b["step_segment"])
    num, den = 0.0, 0.0
    bsz, k, h, w = b["steps"].shape
    start = m.spec.start_token
    for i in range(bsz):  # a token is predicted from its cell in the block before: the state's for a start block
        blocks = [(stl[i, j].reshape(h, w, -1), b["targets"][i, j],
                   b["state"][i] if (b["steps"][i, j] == start).all() else b["steps"][i, j]) for j in range(k)]
        for logits, target, source in blocks:
            for y in range(h):
                for x in range(w):
                    if target[y, x] == IGNORE:
                        continue
                    wt = weight_fn(y, x, bool(target[y, x] != source[y, x]))
                    num = num + wt * F.cross_entropy(logits[y, x][None], target[y, x][None])
                    den += wt
    return num / den


def test_unweighted_loss_is_the_mean_over_known_tokens():
    m, b = model(), batch()
    got = m._losses(b)["procedure_loss"]
    torch.testing.assert_close(got, reference(m, b, lambda y, x, changed: 1.0))


def test_cell_weights_and_changed_token_weight():
    cells = [[1.0, 0.0, 2.0], [1.0, 50.0, 1.0]]
    m, b = model(spec=TokenSpec(4, 5, 3, step_cell_weights=cells), changed_token_weight=10.0), batch(1)
    got = m._losses(b)["procedure_loss"]
    want = reference(m, b, lambda y, x, changed: cells[y][x] * (10.0 if changed else 1.0))
    torch.testing.assert_close(got, want)
    b2 = {k: v.clone() for k, v in b.items()}
    b2["targets"][:, :, 0, 1] = (b2["targets"][:, :, 0, 1] + 1) % 5  # a zero-weight cell: no effect
    torch.testing.assert_close(m._losses(b2)["procedure_loss"], got)


def test_bit_head_loss_is_the_negative_log_likelihood_of_its_factored_distribution():
    """Step vocabulary 5 = 2-bit vectors 0-3 and one symbol 4: the loss of a cell is
    -log p(bits) - sum_b log p(bit b) for a vector, -log p(symbol) for the symbol."""
    with pytest.raises(ValueError, match="bit_head"):
        model(bit_head=True)  # the spec declares no bit vectors
    m, b = model(spec=TokenSpec(4, 5, 3, step_bits=2), bit_head=True, patch=(1, 3)), batch(2)
    got = m._losses(b)["procedure_loss"]
    torch.testing.assert_close(got, reference(m, b, lambda y, x, changed: 1.0))
    hidden = m.net.embed_state(b["state"])  # (B, 2, d) any hidden states: check one cell by hand
    out = m.net.step_head(m.net.ln_f(hidden))[0, 0, :4]  # token (0, 0), cell 0: [bits, symbol, bit0, bit1]
    kind = out[:2].log_softmax(-1)
    lp = m.net.step_logits(hidden, 2, 3)[0, 0]  # (5,)
    torch.testing.assert_close(lp[2], kind[0] + F.logsigmoid(-out[2]) + F.logsigmoid(out[3]))  # id 2 = bits (0, 1)
    torch.testing.assert_close(lp[4], kind[1])
    m._losses(b)["loss"].backward()  # trains end to end
    assert m.net.step_head.weight.grad.abs().sum() > 0
