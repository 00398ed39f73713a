"""The untrained network's outputs on fixed inputs over every code path (windows 1, 2 and
full; hidden tokens; patches; steps with their own shape and a start block; bit heads;
action blocks; padding, segments and every way of hosting the action query), and greedy
generation from them, pinned as checksums. A change meant to leave the network as it is (a
rewrite for readability, a faster kernel) must leave these; one that changes the network
on purpose updates them and says so in its commit."""

import pytest
import torch

from pc_lightning.model.generate import generate
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig

CASES = []
for window in (1, 2, None):
    for hidden in (False, True):
        for patch in ((1, 1), (1, 2)):
            CASES.append(dict(state_vocab=5, step_vocab=7, action_vocab=4, window=window, d_model=16, n_heads=2,
                              n_layers=2, d_ff=32, hidden_from_steps=(3,) if hidden else (), patch=patch))
    CASES.append(dict(state_vocab=6, step_vocab=9, action_vocab=(3, 5), window=window, d_model=16, n_heads=2, n_layers=2,
                      d_ff=32, step_shape=(7, 6), step_bits=3))
    CASES.append(dict(state_vocab=6, step_vocab=9, action_vocab=4, window=window, d_model=16, n_heads=2, n_layers=3,
                      d_ff=32, step_shape=(7, 6), patch=(1, 6)))


def checksums(cfg: dict, seed: int) -> list:
    """|outputs| summed per output of three teacher-forced passes, then a generation's
    actions, lengths, blocks summed and blocks run."""
    torch.manual_seed(seed)
    net = ProcedureTransformer(TransformerConfig(**cfg)).eval()
    hs = ws = 6
    hx, wx = cfg.get("step_shape") or (hs, ws)
    b, k = 5, 4
    g = torch.Generator().manual_seed(seed)
    state = torch.randint(0, cfg["state_vocab"], (b, hs, ws), generator=g)
    steps = torch.randint(0, cfg["step_vocab"], (b, k, hx, wx), generator=g)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[1, 3:] = False
    valid[2, 2:] = False
    segment = torch.zeros(b, k, dtype=torch.long)
    segment[3, 2:] = 1
    row = []
    with torch.no_grad():
        for host, seg, with_steps in ((torch.tensor([3, 2, 1, 3, 0]), segment, True),
                                      (torch.tensor([-1, 2, -1, 3, 0]), segment, True), (None, None, False)):
            for t in net(state, steps if with_steps else None, valid, host, seg, raw=True):
                row.append(None if t is None else round(float(t[t.isfinite()].double().abs().sum()), 6))
        gen = generate(net, state, 6, lambda st, x: x[:, 0, 0] == 1)
    return row + [gen.actions.tolist(), gen.lengths.tolist(), int(gen.steps.sum()), gen.forward_blocks]


REFERENCE = [
    [764.091058, 2643.591497, 4.102865, 764.091058, 2643.591497, 5.137553, 764.091058, None, 6.740026, [[2], [2], [2], [1], [2]], [6, 6, 6, 6, 6], 4657, 30],
    [523.828426, 2350.701044, 6.939876, 523.828426, 2350.701044, 6.712449, 523.828426, None, 6.346284, [[1], [1], [1], [1], [1]], [6, 6, 6, 6, 6], 3744, 30],
    [493.070027, 2618.123402, 4.983986, 493.070027, 2639.123066, 6.341517, 496.222838, None, 9.12219, [[1], [1], [1], [1], [1]], [2, 6, 6, 2, 2], 1321, 18],
    [538.11329, 2256.195887, 6.599507, 538.11329, 2257.965381, 8.232849, 510.458975, None, 9.803824, [[2], [2], [2], [2], [2]], [6, 6, 6, 6, 6], 3165, 30],
    [None, 1932.502379, 23.709866, None, 1932.502379, 22.561699, None, None, 21.715345, [[2, 2], [2, 2], [2, 2], [2, 2], [2, 2]], [2, 2, 2, 2, 2], 3360, 15],
    [None, 3902.452995, 14.37767, None, 3902.452995, 13.983565, None, None, 13.332212, [[1], [1], [1], [1], [1]], [6, 6, 6, 1, 1], 2673, 25],
    [561.744481, 2505.475678, 6.730109, 561.744481, 2505.475678, 8.271227, 561.744481, None, 10.785296, [[3], [3], [3], [3], [3]], [6, 6, 6, 6, 2], 2104, 26],
    [584.121542, 2409.431124, 16.925729, 584.121542, 2409.431124, 13.268581, 584.121542, None, 9.707193, [[2], [2], [2], [2], [2]], [2, 6, 6, 3, 6], 1890, 23],
    [610.618203, 2457.306711, 9.284047, 610.618203, 2467.230465, 7.161002, 665.925837, None, 4.827843, [[3], [3], [3], [3], [3]], [6, 2, 6, 6, 2], 2071, 22],
    [607.979801, 2231.850341, 8.035575, 607.979801, 2222.876654, 7.093713, 609.803105, None, 5.86324, [[2], [0], [3], [3], [3]], [2, 6, 3, 6, 6], 2270, 23],
    [None, 1731.385242, 9.050248, None, 1731.385242, 14.373281, None, None, 20.929934, [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1]], [3, 4, 5, 5, 5], 7111, 27],
    [None, 3658.757558, 12.593786, None, 3658.757558, 9.522966, None, None, 3.928298, [[0], [0], [0], [0], [0]], [6, 6, 6, 1, 6], 3935, 30],
    [673.225846, 2555.938657, 7.158841, 673.225846, 2555.938657, 9.097404, 673.225846, None, 12.835873, [[2], [2], [2], [2], [2]], [6, 6, 6, 6, 6], 4009, 30],
    [624.347593, 2025.695642, 7.961543, 624.347593, 2025.695642, 7.697515, 624.347593, None, 6.981549, [[2], [2], [2], [2], [2]], [2, 2, 2, 3, 2], 1027, 11],
    [594.114206, 2471.804395, 7.790522, 594.114206, 2469.125006, 9.659453, 534.826309, None, 12.128805, [[2], [2], [2], [3], [2]], [6, 1, 6, 1, 6], 2011, 20],
    [583.221345, 2547.013985, 7.593271, 583.221345, 2559.172184, 7.423044, 571.384654, None, 7.792861, [[0], [3], [0], [0], [1]], [4, 4, 6, 6, 6], 3563, 26],
    [None, 1940.582346, 17.598583, None, 1940.582346, 18.377993, None, None, 18.111879, [[2, 2], [2, 2], [2, 2], [2, 2], [2, 2]], [6, 6, 6, 6, 6], 9297, 35],
    [None, 3798.629978, 14.470116, None, 3798.629978, 13.883461, None, None, 14.613892, [[3], [3], [3], [3], [3]], [6, 6, 6, 6, 6], 5296, 35],
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_network_computes_what_it_did(case):
    got, want = checksums(CASES[case], case), REFERENCE[case]
    floats = len(want) - 4
    assert got[floats:] == want[floats:]  # generation: actions, lengths, blocks, blocks run
    for g, w in zip(got[:floats], want[:floats]):
        assert (g is None) == (w is None) and (w is None or g == pytest.approx(w, rel=1e-6)), (got, want)
