"""Folding BN into the weight layer before it, for inference.

In eval mode a BN layer is a fixed per-channel affine map, y = γ (x − μ) / √(σ² + ε) + β, so a
convolution or linear layer followed by it is one convolution or linear layer with weights
W' = W · γ/√(σ² + ε) (per output channel) and bias b' = (b − μ) γ/√(σ² + ε) + β. The fused
weights come from torch's own ``torch.nn.utils.fusion.fuse_conv_bn_eval`` and
``fuse_linear_bn_eval``; this module finds the pairs.

The pairs are found on the model's ``torch.fx`` graph (norm layers are leaves of the trace): a
BN-type layer whose input is the output of a plain ``nn.Conv2d`` / ``nn.Linear`` used by nothing
else. A layer is folded only when its eval forward is that affine map: torch's BatchNorm and
normbench's BN, ghost BN, detached BN, Batch Renorm (r = 1, d = 0 at inference) and SyncBN.
Mean-only BN and EvoNorm-B0 (whose eval forward is another function), reparametrized weight
layers (Weight Normalization, Weight Standardization) and every norm without running
statistics are left as they are, and :class:`Folded` says how many were folded. Empty norm
slots (``norm=none``'s :class:`~normbench.norms.spec.IdentitySlot`, which only check their
input's shape) are dropped from the graph too, so that a folded BN network and the no-norm
network passed through :func:`fold_norms` have the same form: an ``fx`` graph of the same
convolutions, without the per-layer Python module calls the nested model makes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from normbench.norms.spec import IdentitySlot

#: normbench variants whose eval forward is BN's affine map of the running statistics
AFFINE_AT_EVAL = {"batch", "batch_detached", "batch_renorm", "ghost_batch", "sync_batch"}
TORCH_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)


@dataclass
class Folded:
    """A folded copy of a model and what was done."""

    model: fx.GraphModule
    folded: int  #: BN layers folded into the weight layer before them
    left: int  #: BN-type layers left in place (not foldable)


def foldable(norm: nn.Module) -> bool:
    """Whether ``norm``'s eval forward is the affine map of its running statistics."""
    if not isinstance(norm, _BatchNorm) or norm.running_mean is None or norm.training:
        return False
    return type(norm) in TORCH_BN or getattr(norm, "variant", None) in AFFINE_AT_EVAL


class _Tracer(fx.Tracer):
    """Norm slots and other leaf modules stay calls (their input checks cannot be traced)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _BatchNorm) or type(m).__module__.startswith("normbench.norms"):
            return True
        return super().is_leaf_module(m, qualname)


def _weight_layer(module: nn.Module, norm: nn.Module) -> bool:
    if parametrize.is_parametrized(module):
        return False
    if type(module) is nn.Conv2d:
        return module.out_channels == norm.num_features
    return type(module) is nn.Linear and module.out_features == norm.num_features


@torch.no_grad()
def fold_norms(model: nn.Module) -> Folded:
    """A copy of ``model`` (in eval mode) with every foldable BN folded into its weight layer.

    The model itself is not changed. Raises ``torch.fx`` errors for a model whose forward
    cannot be traced.
    """
    model = copy.deepcopy(model).eval()
    tracer = _Tracer()
    graph = tracer.trace(model)
    folded = fx.GraphModule(tracer.root, graph)
    modules = dict(folded.named_modules())
    count = left = 0
    for node in list(folded.graph.nodes):
        if node.op == "call_module" and type(modules[node.target]) is IdentitySlot:
            node.replace_all_uses_with(node.args[0])
            folded.graph.erase_node(node)
            continue
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        norm = modules[node.target]
        source = node.args[0] if node.args else None
        ok = (
            foldable(norm)
            and isinstance(source, fx.Node)
            and source.op == "call_module"
            and len(source.users) == 1
            and _weight_layer(modules[source.target], norm)
        )
        if not ok:
            left += 1
            continue
        layer = modules[source.target]
        fuse = fuse_conv_bn_eval if isinstance(layer, nn.Conv2d) else fuse_linear_bn_eval
        _set(folded, source.target, fuse(layer, norm))
        node.replace_all_uses_with(source)
        folded.graph.erase_node(node)
        count += 1
    folded.graph.lint()
    folded.delete_all_unused_submodules()
    folded.recompile()
    return Folded(folded.eval(), count, left)


def _set(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
