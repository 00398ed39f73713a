import pytest
import torch

from pc_lightning.model.generate import act_from_state, generate
from pc_lightning.model.transformer import ProcedureTransformer, TransformerConfig

H = W = 5


def make(window, **kw):
    torch.manual_seed(0)
    cfg = TransformerConfig(state_vocab=4, step_vocab=6, action_vocab=4, d_model=16, n_heads=2, n_layers=2,
                            d_ff=32, window=window, **kw)
    return ProcedureTransformer(cfg).eval()


def batch(k=5, b=2):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 4, (b, H, W), generator=g), torch.randint(0, 6, (b, k, H, W), generator=g)


@pytest.mark.parametrize("window", [1, 2, None])
def test_later_blocks_do_not_change_earlier_logits(window):
    net = make(window)
    state, steps = batch()
    x1, _ = net(state, steps)
    changed = steps.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 6
    x2, _ = net(state, changed)
    assert torch.allclose(x1[:, :3], x2[:, :3], atol=1e-6)
    assert not torch.allclose(x1[:, 3], x2[:, 3])


def test_window_one_sees_only_the_previous_block_and_state():
    net = make(1)
    state, steps = batch()
    x1, _ = net(state, steps)
    changed = steps.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 6
    x2, _ = net(state, changed)
    assert torch.allclose(x1[:, 2:], x2[:, 2:], atol=1e-6)  # x_3.. predicted from x_2.. only
    assert not torch.allclose(x1[:, 1], x2[:, 1])


@pytest.mark.parametrize("window", [1, 2])
def test_padding_blocks_change_no_real_block(window):
    """A padding block (step_valid False) leaves every real block's outputs and the action
    as they are, whatever it holds; with window 1 no attention mask is built for it at all."""
    net = make(window)
    state, steps = batch()
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[0, 4] = valid[1, 3:] = False  # padding at the ends, as the collate function pads
    host = torch.tensor([3, 2])
    x1, a1 = net(state, steps, valid, host)
    changed = steps.clone()
    changed[~valid] = (changed[~valid] + 1) % 6
    x2, a2 = net(state, changed, valid, host)
    assert torch.allclose(x1[valid], x2[valid], atol=1e-6)
    assert torch.allclose(a1, a2, atol=1e-6)
    x_all, _ = net(state, steps, torch.ones_like(valid), host)  # the same blocks, none called padding
    if window == 1:  # a block sees only itself (and the state): padding elsewhere changes nothing
        assert torch.allclose(x1[valid], x_all[valid], atol=1e-6)


def test_window_two_reaches_back_through_layers():
    net = make(2)  # receptive field (w-1)*n_layers = 2 blocks back
    state, steps = batch()
    x1, _ = net(state, steps)
    changed = steps.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 6
    x2, _ = net(state, changed)
    assert not torch.allclose(x1[:, 2], x2[:, 2])
    assert torch.allclose(x1[:, 3:], x2[:, 3:], atol=1e-6)


def test_segments_do_not_see_each_other():
    net = make(None)
    state, steps = batch()
    seg = torch.tensor([[0, 0, 0, 1, 1]] * 2)
    x1, _ = net(state, steps, step_segment=seg)
    x_alone, _ = net(state, steps[:, 3:])
    assert torch.allclose(x1[:, 3:], x_alone, atol=1e-5)


def test_action_query_sees_only_its_host():
    net = make(1)
    state, steps = batch()
    host = torch.tensor([2, 2])
    _, a1 = net(state, steps, action_host=host)
    changed = steps.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 6  # after the host: invisible
    _, a2 = net(state, changed, action_host=host)
    assert torch.allclose(a1, a2, atol=1e-6)
    changed[:, 2] = (changed[:, 2] + 1) % 6  # the host itself
    _, a3 = net(state, changed, action_host=host)
    assert not torch.allclose(a1, a3)
    # hosted at the state block (BC, Aux BC) it never sees a step
    _, b1 = net(state, steps, action_host=torch.tensor([-1, -1]))
    assert torch.allclose(b1, act_from_state(net, state), atol=1e-5)


@pytest.mark.parametrize("window,patch,bits", [(1, (1, 1), 0), (2, (1, 1), 0), (None, (1, 1), 0), (1, (2, 3), 0),
                                               (2, (1, 5), 0), (1, (1, 5), 2), (None, (1, 1), 2)])
def test_cached_generation_equals_full_forward(window, patch, bits):
    # patch (2, 3) overhangs the 5 x 5 grid on both sides; (1, 5) is a token per row;
    # bits 2: step tokens 0-3 are 2-bit vectors, 4-5 symbols, predicted by the bit head
    net = make(window, patch=patch, step_bits=bits)
    state, _ = batch(b=4)
    gen = generate(net, state, max_steps=6)
    for i in range(4):
        n = int(gen.lengths[i])
        steps = gen.steps[i : i + 1, :n]
        assert (steps >= 0).all()
        full = torch.cat([net.start_block(1, H, W, state.device)[:, None], steps], 1)  # [START, x_0 .. x_n-1]
        x_logits, a_logits = net(state[i : i + 1], full, action_host=torch.tensor([n]))
        for l in range(n):  # block l (START, x_0, ...) predicts x_l
            assert (x_logits[0, l].argmax(-1).reshape(H, W) == steps[0, l]).all()
        assert torch.allclose(a_logits[0], gen.action_logits[i], atol=1e-4)
        assert gen.actions[i] == a_logits[0].argmax()


def test_generation_stops_by_rule_and_fixed_point():
    net = make(1)
    state, _ = batch(b=3)
    calls = []

    def stop_on_third_round(st, x):
        calls.append(len(st))
        return torch.full((len(st),), len(calls) >= 3)

    gen = generate(net, state, max_steps=10, stop_fn=stop_on_third_round)
    for i in range(3):  # the rule stops every sequence at its third block, unless a repeat did before
        n = int(gen.lengths[i])
        assert n == 3 or (n < 3 and torch.equal(gen.steps[i, n - 1], gen.steps[i, n - 2]))
    # a network whose step head ignores its input writes the same block forever: with
    # window 1 the second block repeats the first, a fixed point, so generation stops there
    with torch.no_grad():
        net.step_head.weight.zero_()
        net.step_head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(2), 6).float() * 10)
    fixed = generate(net, state, max_steps=50)
    assert fixed.lengths.tolist() == [2, 2, 2]
    assert (fixed.steps == 2).all()


def test_patch_tokens_keep_cells_apart():
    """With patches every cell still has its own logits, and a cell's position in its patch
    matters: the same tokens in swapped cells give other outputs; the grid of tokens shrinks."""
    net = make(1, patch=(2, 3))
    state, steps = batch()
    assert net.embed_state(state).shape == (2, 3 * 2, 16)  # 5 x 5 cells -> 3 x 2 tokens
    x1, _ = net(state, steps)
    assert x1.shape == (2, 5, H * W, 6)
    swapped = state.clone()
    swapped[:, 0, 0], swapped[:, 0, 1] = state[:, 0, 1], state[:, 0, 0]
    differ = (state[:, 0, 0] != state[:, 0, 1])
    assert differ.any()
    x2, _ = net(swapped, steps)
    assert not torch.allclose(x1[differ], x2[differ])
    with pytest.raises(ValueError, match="patch"):
        TransformerConfig(4, 6, 4, patch=(0, 2))


def test_patch_outputs_map_back_to_their_cells():
    """Token (i, j)'s output slot a * pw + b is cell (i * ph + a, j * pw + b), the position the
    embedding gives that cell; slots past the grid's edge are dropped."""
    net = make(1, patch=(2, 3))
    gh, gw = net.grid(H, W)
    t = torch.full((1, gh * gw, 6), -1)
    for i in range(gh):
        for j in range(gw):
            for a in range(2):
                for b in range(3):
                    y, x = i * 2 + a, j * 3 + b
                    if y < H and x < W:
                        t[0, i * gw + j, a * 3 + b] = y * W + x
    assert torch.equal(net._to_cells(t, H, W), torch.arange(H * W).reshape(1, H, W))


def test_bit_head_is_a_distribution_and_decodes_to_its_argmax():
    """With step_bits the per-cell outputs are log-probabilities over the whole vocabulary
    (bit vectors, then symbols), and the fast greedy decoding picks their argmax."""
    net = make(1, step_bits=2, patch=(1, 5))
    assert net.step_head.out_features == 5 * (1 + 2 + 2)  # per cell: bits-or-symbol (3) and 2 bits
    with torch.no_grad():
        net.step_head.bias.normal_(0, 3)  # spread the outputs so symbols and vectors both win somewhere
    state, steps = batch(b=8)
    x_lp, _ = net(state, steps)
    assert torch.allclose(x_lp.logsumexp(-1), torch.zeros(()), atol=1e-5)
    hidden = net.embed_state(state)  # any hidden states will do for the decoding rule
    full = net.step_logits(hidden, H, W).argmax(-1).reshape(-1, H, W)
    fast = net.decode(hidden, H, W)
    assert torch.equal(full, fast)
    assert (fast >= 4).any() and (fast < 4).any()
    # the training loss and accuracy read the raw outputs: the same numbers as the full table
    raw = net.step_logits(hidden, H, W, raw=True).flatten(0, 1)  # (T, 1 + S + B)
    table = net.step_logits(hidden, H, W).flatten(0, 1)  # (T, V)
    target = torch.randint(0, 6, (len(raw),))
    target[::7] = -100  # ignored cells cost nothing
    want = torch.nn.functional.cross_entropy(table, target, ignore_index=-100, reduction="none")
    assert torch.allclose(net.cell_nll(raw, target), want, atol=1e-5)
    assert torch.equal(net.cell_argmax(raw), table.argmax(-1))
    with pytest.raises(ValueError, match="step_bits"):
        TransformerConfig(4, 6, 4, step_bits=3)  # 8 vectors do not fit a vocabulary of 6


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="window"):
        TransformerConfig(4, 6, 4, window=0)
    with pytest.raises(ValueError, match="n_heads"):
        TransformerConfig(4, 6, 4, d_model=10, n_heads=3)


@pytest.mark.parametrize("window,patch", [(1, (1, 1)), (2, (1, 1)), (1, (2, 2)), (2, (2, 2))])
def test_cached_generation_with_hidden_agent_equals_full_forward(window, patch):
    """The maze setting: step blocks see the state without token 3, the host block sees it
    all, and the query reads its host block's window only; a chain generated before resumes
    to exactly the same result."""
    net = make(window, hidden_from_steps=(3,), patch=patch)
    state, _ = batch(b=4)
    gen = generate(net, state, max_steps=6)
    for i in range(4):
        n = int(gen.lengths[i])
        _, a_logits = net(state[i : i + 1], gen.steps[i : i + 1, :n], action_host=torch.tensor([n - 1]))
        assert torch.allclose(a_logits[0], gen.action_logits[i], atol=1e-4)
    again = generate(net, state, max_steps=6, prefixes=gen.chains)
    assert torch.allclose(again.action_logits, gen.action_logits, atol=1e-5)
    assert torch.equal(again.lengths, gen.lengths)


def test_hidden_tokens_are_shown_as_their_replacement():
    """PointMaze's setting: hidden token 3 is shown as 0, hidden token 2 as 1 (a ball on the goal
    shows the goal); the context decides x_0 and every step, the host block sees the state."""
    net = make(1, hidden_from_steps=(2, 3), hidden_as=(1, 0))
    state, steps = batch(b=1)
    assert torch.equal(net.step_context(torch.tensor([0, 1, 2, 3])), torch.tensor([0, 1, 1, 0]))
    shown = net.step_context(state)
    assert not torch.isin(shown, torch.tensor([2, 3])).any()
    x, _ = net(state, steps)
    x_shown, _ = net(shown, steps)
    assert torch.allclose(x, x_shown, atol=1e-6)  # steps see only the context
    with pytest.raises(ValueError, match="hidden_as"):
        TransformerConfig(4, 6, 4, hidden_from_steps=(2, 3), hidden_as=(0,))
    with pytest.raises(ValueError, match="hidden_as"):
        TransformerConfig(4, 6, 4, hidden_from_steps=(2, 3), hidden_as=(0, 2))  # 2 is hidden itself


def test_column_stem_equals_the_2d_convolution():
    """One patch per row makes the token grid a column; the stem's 1-D shortcut is the same convolution."""
    from pc_lightning.model.transformer import GridStem

    torch.manual_seed(0)
    stem = GridStem(8, kernel=3, layers=2)
    x = torch.randn(4, 7, 1, 8)  # (M, H, W=1, d)
    y = x.permute(0, 3, 1, 2)
    for conv in stem.convs:  # the 2-D reference, the padded columns included
        y = y + torch.nn.functional.conv2d(torch.nn.functional.gelu(y), conv.weight, conv.bias, padding=1)
    ref = y.permute(0, 2, 3, 1).reshape(4, 7, 8)
    assert torch.allclose(stem(x), ref, atol=1e-6)


@pytest.mark.parametrize("with_mask", [False, True])
def test_small_attention_equals_the_fused_kernel(with_mask):
    """Up to SMALL_ATTENTION_KEYS keys, attention is computed with two matmuls; it must equal SDPA."""
    from pc_lightning.model.transformer import SMALL_ATTENTION_KEYS, Layer

    torch.manual_seed(0)
    layer = Layer(TransformerConfig(state_vocab=4, step_vocab=4, action_vocab=2, d_model=16, n_heads=2))
    m, tq, tk = 5, 6, SMALL_ATTENTION_KEYS - 1  # the sink makes it SMALL_ATTENTION_KEYS keys
    q, k, v = torch.randn(m, tq, 2, 8), torch.randn(m, tk, 2, 8), torch.randn(m, tk, 2, 8)
    mask = torch.rand(m, tk) > 0.3 if with_mask else None
    bias = torch.randn(2, tq, tk)
    got = layer.attend(q, k, v, mask, bias)
    ks = torch.cat([layer.sink[0].expand(m, -1, -1, -1), k], 1)
    vs = torch.cat([layer.sink[1].expand(m, -1, -1, -1), v], 1)
    full = torch.nn.functional.pad(bias, (1, 0))[None].expand(m, -1, -1, -1)
    if mask is not None:
        full = full.masked_fill(~torch.cat([torch.ones(m, 1, dtype=torch.bool), mask], 1)[:, None, None], float("-inf"))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), ks.transpose(1, 2), vs.transpose(1, 2), attn_mask=full).transpose(1, 2).flatten(-2)
    assert got.shape == (m, tq, 16)
    assert torch.allclose(got, ref, atol=1e-5)
