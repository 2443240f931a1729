"""Every norm slot takes inputs of the rank it was built for, and says so otherwise.

A ``dims=2`` slot takes (N, C, H, W) inputs only, as torch's ``BatchNorm2d`` does (``expected
4D input (got 3D input)``); a ``dims=1`` slot (N, C) inputs only. Checked on every registered
variant and on the modes that build other modules (closed-form BN, ghost BN's kernels,
EvoNorm-B0, mean-only BN, NormProp without γ, β), in training and eval mode.
"""

from __future__ import annotations

import pytest
import torch

from normbench.errors import ConfigError
from normbench.norms import build_norm_spec, known_norms
from normbench.norms.spec import IdentitySlot

pytestmark = pytest.mark.usefixtures("one_thread")

C = 8
SMALL = {"group": {"num_groups": 4}, "ws_group": {"num_groups": 4}, "evonorm": {"groups": 4}}
MODES = [(name, SMALL.get(name, {})) for name in known_norms()] + [
    ("batch", {"impl": "closed_form"}),
    ("ghost_batch", {"impl": "native", "group_size": 2}),
    ("ghost_batch", {"impl": "closed_form", "group_size": 2}),
    ("batch_renorm", {"group_size": 2}),
    ("batch_detached", {"group_size": 2}),
    ("evonorm", {"groups": 4, "version": "B0"}),
    ("weight", {"mean_only_bn": True}),
    ("mean_batch", {"affine": False, "detached": True}),
    ("normprop", {"affine": False}),
    ("frn", {"learnable_eps": True}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in o.items() if k != "num_groups") for name, o in MODES]
GOOD = {1: (4, C), 2: (4, C, 3, 3)}
BAD = {1: [(4, C, 3), (4, C, 3, 3), (C,)], 2: [(4, C), (4, C, 3), (4, C, 3, 3, 3)]}
EXPECTED = {1: f"expects 2D input (N, {C})", 2: f"expects 4D input (N, {C}, H, W)"}


def slot(name: str, options: dict, dims: int) -> torch.nn.Module | None:
    try:
        return build_norm_spec({"name": name, **options}).layer(C, dims)
    except ConfigError:  # instance norm of (N, C) features: refused (tested in test_norms.py)
        assert name == "instance" and dims == 1
        return None


@pytest.mark.parametrize(("name", "options"), MODES, ids=IDS)
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_slot_rejects_inputs_of_another_rank_and_channel_count(name, options, dims, training):
    module = slot(name, options, dims)
    if module is None:
        return
    module.train(training)
    assert module(torch.randn(GOOD[dims])).shape == GOOD[dims]
    wrong_channels = (GOOD[dims][0], C + 1, *GOOD[dims][2:])
    for shape in [*BAD[dims], wrong_channels]:
        with pytest.raises(ValueError) as err:
            module(torch.randn(shape))
        message = str(err.value)
        assert EXPECTED[dims] in message, message
        assert f"got {len(shape)}D input of shape {shape}" in message, message
        assert f"dims={dims}" in message and type(module).__name__ in message


def test_an_empty_slot_is_still_an_identity():
    module = build_norm_spec({"name": "none"}).layer(C, dims=2)
    assert isinstance(module, torch.nn.Identity) and isinstance(module, IdentitySlot)
    x = torch.randn(GOOD[2])
    assert module(x) is x
