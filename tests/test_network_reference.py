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
    """|outputs| summed per output (step blocks, action) of three teacher-forced passes,
    then a generation's actions, lengths, blocks summed and blocks run."""
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
    [2320.448052, 8.182225, 2320.448052, 7.937157, None, 7.581835, [[3], [3], [3], [1], [3]], [6, 6, 6, 6, 6], 3559, 35],
    [2431.200269, 11.616052, 2431.200269, 11.219841, None, 9.85404, [[1], [1], [1], [1], [1]], [2, 6, 2, 2, 2], 931, 19],
    [2459.466662, 7.089947, 2450.449913, 7.59791, None, 8.291608, [[0], [0], [0], [0], [0]], [1, 1, 1, 1, 1], 265, 10],
    [2354.172685, 5.596111, 2362.950315, 4.672462, None, 3.626945, [[1], [0], [0], [1], [1]], [1, 1, 6, 6, 1], 1092, 20],
    [1932.502379, 23.709866, 1932.502379, 22.561699, None, 21.715345, [[2, 2], [2, 2], [2, 2], [2, 2], [2, 2]], [2, 2, 2, 2, 2], 3360, 15],
    [3902.452995, 14.37767, 3902.452995, 13.983565, None, 13.332212, [[1], [1], [1], [1], [1]], [6, 6, 6, 1, 1], 2673, 25],
    [2644.981397, 7.730185, 2644.981397, 8.45182, None, 9.36204, [[0], [0], [0], [0], [0]], [1, 5, 1, 6, 6], 2462, 24],
    [2478.981887, 2.150295, 2478.981887, 5.009553, None, 7.79898, [[1], [1], [1], [1], [1]], [4, 6, 6, 6, 6], 2685, 33],
    [2334.272692, 6.382139, 2324.551086, 7.500142, None, 10.103107, [[1], [1], [1], [0], [1]], [1, 1, 1, 6, 1], 107, 15],
    [2394.666579, 15.948781, 2389.953755, 13.214586, None, 7.605222, [[1], [1], [1], [1], [1]], [2, 2, 3, 2, 3], 671, 17],
    [1731.385242, 9.050248, 1731.385242, 14.373281, None, 20.929934, [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1]], [3, 4, 5, 5, 5], 7111, 27],
    [3658.757558, 12.593786, 3658.757558, 9.522966, None, 3.928298, [[0], [0], [0], [0], [0]], [6, 6, 6, 1, 6], 3935, 30],
    [2403.512172, 6.58717, 2403.512172, 12.387736, None, 20.312254, [[0], [0], [0], [0], [0]], [2, 2, 2, 2, 2], 772, 15],
    [2634.211127, 7.799368, 2634.211127, 7.822697, None, 7.190555, [[3], [3], [3], [3], [3]], [6, 2, 6, 2, 6], 2261, 27],
    [2547.860121, 8.228011, 2563.681487, 7.817462, None, 7.237291, [[2], [2], [2], [2], [2]], [6, 1, 6, 5, 1], 2387, 24],
    [2344.977499, 9.499019, 2333.573014, 8.635928, None, 7.275619, [[0], [0], [0], [3], [0]], [6, 5, 6, 6, 5], 2968, 33],
    [1940.582346, 17.598583, 1940.582346, 18.377993, None, 18.111879, [[2, 2], [2, 2], [2, 2], [2, 2], [2, 2]], [6, 6, 6, 6, 6], 9297, 35],
    [3798.629978, 14.470116, 3798.629978, 13.883461, None, 14.613892, [[3], [3], [3], [3], [3]], [6, 6, 6, 6, 6], 5296, 35],
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_network_computes_what_it_did(case):
    got, want = checksums(CASES[case], case), REFERENCE[case]
    floats = len(want) - 4
    assert got[floats:] == want[floats:]  # generation: actions, lengths, blocks, blocks run
    for g, w in zip(got[:floats], want[:floats]):
        assert (g is None) == (w is None) and (w is None or g == pytest.approx(w, rel=1e-6)), (got, want)
