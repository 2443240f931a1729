"""model=lstm: the cell against torch.nn.LSTM and against float64 formulas written here, per-step
statistics (separate, checkpointed, reused past the training length), sequences, every norm that
fits the cell, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from normbench.engine.checkpoint import load_checkpoint, save_checkpoint
from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.lstm import LSTMClassifier, NormLSTMLayer
from normbench.norms import build_norm_spec, known_norms

SHAPE = (1, 6, 5)  # 6 rows of 5 values: 6 steps


def lstm(norm="none", shape=SHAPE, classes=3, **options) -> LSTMClassifier:
    cfg = OmegaConf.create({"name": "lstm", "hidden": 4, **options})
    norm_cfg = norm if isinstance(norm, dict) else {"name": norm}
    return build_model(cfg, build_norm_spec(norm_cfg), classes, shape)


def torch_twin(model: LSTMClassifier) -> nn.LSTM:
    """A torch.nn.LSTM holding the weights of our cell (norm=none, plain linear layers)."""
    layers = list(model.layers)
    ref = nn.LSTM(layers[0].ih.in_features, layers[0].hidden, num_layers=len(layers)).double()
    with torch.no_grad():
        for k, layer in enumerate(layers):
            getattr(ref, f"weight_ih_l{k}").copy_(layer.ih.weight)
            getattr(ref, f"weight_hh_l{k}").copy_(layer.hh.weight)
            getattr(ref, f"bias_ih_l{k}").copy_(layer.bias_ih)
            getattr(ref, f"bias_hh_l{k}").copy_(layer.bias_hh)
    return ref


@pytest.mark.parametrize("layers", [1, 2])
def test_our_cell_without_norm_is_torch_lstm_with_the_same_weights(layers):
    torch.manual_seed(0)
    model = lstm("none", layers=layers, impl="cell").double()
    assert not model.fast
    ref = torch_twin(model)
    x = torch.randn(7, *SHAPE, dtype=torch.float64, requires_grad=True)
    seq = model.to_sequence(x)
    ours = seq
    for layer in model.layers:
        ours = layer(ours)
    theirs = ref(seq)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


def test_the_fast_path_is_torch_lstm_and_unrolls_to_the_same_states():
    torch.manual_seed(0)
    fast = lstm("none", layers=2).double()
    assert fast.fast and isinstance(fast.rnn, nn.LSTM)
    cell = lstm("none", layers=2, impl="cell").double()
    with torch.no_grad():
        for k, layer in enumerate(cell.layers):
            layer.ih.weight.copy_(getattr(fast.rnn, f"weight_ih_l{k}"))
            layer.hh.weight.copy_(getattr(fast.rnn, f"weight_hh_l{k}"))
            layer.bias_ih.copy_(getattr(fast.rnn, f"bias_ih_l{k}"))
            layer.bias_hh.copy_(getattr(fast.rnn, f"bias_hh_l{k}"))
        cell.head.load_state_dict(fast.head.state_dict())
    x = torch.randn(5, *SHAPE, dtype=torch.float64)
    torch.testing.assert_close(fast(x), cell(x), rtol=1e-12, atol=1e-12)
    logits, kept = fast.forward_keeping(x)
    logits_cell, kept_cell = cell.forward_keeping(x)
    torch.testing.assert_close(logits, fast(x), rtol=1e-12, atol=1e-12)
    assert [len(k) for k in kept] == [6, 6]
    for a, b in zip(kept, kept_cell, strict=True):
        torch.testing.assert_close(torch.stack(a), torch.stack(b), rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in cell.parameters())


# --- the normalized cell against the float64 formula -----------------------------------------


def bn64(x, gamma, beta, eps):
    """BN with the batch's statistics (biased variance), per channel over the batch."""
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def ln64(x, gamma, beta, eps):
    """LN per example over its channels, per-channel gain and bias (Ba et al. 2016)."""
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def reference(layer: NormLSTMLayer, seq: torch.Tensor, norm) -> torch.Tensor:
    """Cooijmans et al. eq. 6 / Ba et al. §3.1, step by step, with ``norm`` in the three slots."""
    eps = 1e-5
    gx, gh, gc = (s.slots[0] for s in (layer.norm_x, layer.norm_h, layer.norm_c))
    h = seq.new_zeros(seq.shape[1], layer.hidden)
    c = torch.zeros_like(h)
    outs = []
    for t in range(seq.shape[0]):
        a = norm(seq[t] @ layer.ih.weight.T, gx.weight, gx.bias, eps)
        r = norm(h @ layer.hh.weight.T, gh.weight, gh.bias, eps)
        i, f, g, o = (a + r + layer.bias_ih + layer.bias_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(norm(c, gc.weight, gc.bias, eps))
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize(
    ("norm", "placement", "formula"),
    [("batch", "per_step", bn64), ("batch", "shared", bn64), ("layer", "shared", ln64)],
)
def test_the_normalized_cell_follows_its_formula_values_and_gradients(norm, placement, formula):
    torch.manual_seed(0)
    model = lstm(norm, placement=placement, gamma_init=0.1).double().train()
    layer = model.layers[0]
    with torch.no_grad():  # γ and β away from their init, so that they are tested too
        for slots in (layer.norm_x, layer.norm_h, layer.norm_c):
            slots.slots[0].weight.uniform_(0.5, 1.5)
            slots.slots[0].bias.uniform_(-0.5, 0.5)
    seq = torch.randn(6, 8, 5, dtype=torch.float64, requires_grad=True)
    ours = layer(seq)
    theirs = reference(layer, seq, formula)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    weights = [seq, layer.ih.weight, layer.hh.weight, layer.norm_h.slots[0].weight]
    upstream = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, weights, upstream)
    g_theirs = torch.autograd.grad(theirs, weights, upstream)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_vertical_bn_normalizes_the_input_transform_over_batch_and_time():
    torch.manual_seed(0)
    model = lstm("batch", placement="vertical").double().train()
    layer = model.layers[0]
    assert layer.norm_x is None and layer.norm_h is None and layer.norm_c is None
    seq = torch.randn(6, 8, 5, dtype=torch.float64)
    proj = bn64(seq.reshape(48, 5) @ layer.ih.weight.T, 1.0, 0.0, 1e-5).view(6, 8, -1)
    h = c = seq.new_zeros(8, 4)
    for t in range(6):
        i, f, g, o = (proj[t] + h @ layer.hh.weight.T + layer.bias_ih + layer.bias_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    torch.testing.assert_close(layer(seq)[-1], h, rtol=1e-10, atol=1e-10)


# --- per-step statistics -----------------------------------------------------------------------


def test_per_step_slots_share_gamma_and_beta_and_start_at_gamma_init():
    model = lstm("batch", placement="per_step", gamma_init=0.1)
    slots = model.layers[0].norm_h.slots
    assert len(slots) == 6
    assert all(s.weight is slots[0].weight and s.bias is slots[0].bias for s in slots)
    assert torch.all(slots[0].weight == 0.1)
    assert all(
        torch.all(s.slots[0].weight == 0.1)
        for s in (model.layers[0].norm_x, model.layers[0].norm_c)
    )
    # parameters counted once: 2 transforms, 2 biases, 3 shared (γ, β), the head
    h = 4
    expected = 4 * h * (5 + h) + 2 * 4 * h + 2 * (4 * h + 4 * h + h) + (h * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_per_step_statistics_are_kept_separately_and_restored_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = lstm("batch", placement="per_step", gamma_init=0.1).train()
    x = torch.rand(16, *SHAPE) * torch.linspace(0.2, 3.0, 6).view(1, 1, 6, 1)  # rows differ
    for _ in range(3):
        model(x)
    slots = model.layers[0].norm_x.slots
    means = torch.stack([s.running_mean for s in slots])
    assert all(int(s.num_batches_tracked) == 3 for s in slots)
    assert not torch.allclose(means[0], means[-1])  # each step its own statistics
    state = model.state_dict()
    assert {f"layers.0.norm_x.slots.{t}.running_mean" for t in range(6)} <= set(state)
    save_checkpoint(tmp_path / "last.pt", {"step": 3, "model": state})
    fresh = lstm("batch", placement="per_step", gamma_init=0.1)
    fresh.load_state_dict(load_checkpoint(tmp_path / "last.pt", torch.device("cpu"))["model"])
    for a, b in zip(model.layers[0].norm_c.slots, fresh.layers[0].norm_c.slots, strict=True):
        torch.testing.assert_close(a.running_var, b.running_var, rtol=0, atol=0)
    fresh_slots = fresh.layers[0].norm_h.slots
    assert all(s.weight is fresh_slots[0].weight for s in fresh_slots)  # still tied after loading
    model.eval(), fresh.eval()
    torch.testing.assert_close(model(x), fresh(x), rtol=0, atol=0)


def test_shared_statistics_are_one_set_updated_at_every_step():
    model = lstm("batch", placement="shared").train()
    slots = model.layers[0].norm_x.slots
    assert len(slots) == 1
    model(torch.rand(16, *SHAPE))
    assert int(slots[0].num_batches_tracked) == 6


def test_steps_past_the_training_length_use_the_last_steps_statistics():
    torch.manual_seed(0)
    model = lstm("batch", placement="per_step").train()
    model(torch.rand(16, *SHAPE))
    model.eval()
    calls = [0] * 6
    slots = model.layers[0].norm_x.slots
    hooks = [
        s.register_forward_hook(lambda *_a, t=t: calls.__setitem__(t, calls[t] + 1))
        for t, s in enumerate(slots)
    ]
    longer = torch.rand(9, 2, 5)  # 9 steps; the model was built for 6
    out = model.layers[0](longer)
    for h in hooks:
        h.remove()
    assert out.shape == (9, 2, 4)
    assert calls == [1, 1, 1, 1, 1, 4]
    # ... and the first 6 steps are those of the 6-step sequence
    torch.testing.assert_close(out[:6], model.layers[0](longer[:6]))


# --- sequences ---------------------------------------------------------------------------------


def test_rows_and_permuted_pixels_are_read_in_their_order():
    x = torch.arange(2 * 1 * 6 * 5, dtype=torch.float32).view(2, 1, 6, 5)
    rows = lstm("none").to_sequence(x)
    assert rows.shape == (6, 2, 5)
    torch.testing.assert_close(rows[3, 1], x[1, 0, 3])
    pixels = lstm("none", sequence="pixels").to_sequence(x)
    assert pixels.shape == (30, 2, 1)
    torch.testing.assert_close(pixels[:, 1, 0], x[1].flatten())
    a = lstm("none", sequence="pixels", permute=True, permute_seed=3)
    b = lstm("none", sequence="pixels", permute=True, permute_seed=3)
    perm = a.to_sequence(x)
    torch.testing.assert_close(perm, b.to_sequence(x))  # the same permutation for every run
    assert sorted(perm[:, 0, 0].tolist()) == x[0].flatten().tolist()
    assert perm[:, 0, 0].tolist() != x[0].flatten().tolist()
    assert a.steps == 30 and "order" not in a.state_dict()


# --- every norm of the registry that fits the cell -----------------------------------------------

SLOT_NORMS = sorted(set(known_norms()) - {"instance", "frn", "evonorm"})


@pytest.mark.parametrize("norm", SLOT_NORMS)
@pytest.mark.parametrize("placement", ["vertical", "shared", "per_step"])
def test_every_slot_norm_trains_the_lstm(norm, placement):
    torch.manual_seed(0)
    cfg = {"name": norm, "num_groups": 2} if norm in ("group", "ws_group") else {"name": norm}
    model = lstm(cfg, placement=placement, layers=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, *SHAPE), torch.randint(0, 3, (8,))
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    model.eval()
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize(
    ("options", "norm", "message"),
    [
        ({"placement": "diagonal"}, "batch", "model.placement='diagonal' is not one of"),
        ({"layers": 3}, "batch", "model.layers must be 1 or 2"),
        ({"hidden": 0}, "batch", "model.hidden must be a positive integer"),
        ({"permute": True}, "batch", "needs model.sequence=pixels"),
        ({"gamma_init": 0.1}, "none", "set model.gamma_init=null"),
        ({"gamma_init": -1}, "batch", "model.gamma_init must be a number > 0"),
        ({"impl": "torch"}, "batch", "model.impl=torch runs torch.nn.LSTM"),
        ({"width": 2}, "batch", "model=lstm has no option width"),
        ({}, "frn", "carries its own nonlinearity"),
    ],
)
def test_bad_options_are_one_clear_error(options, norm, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        lstm(norm, **options)


def test_flat_inputs_are_refused():
    with pytest.raises(ConfigError, match=r"reads \(C, H, W\) images"):
        lstm("none", shape=(20,))
