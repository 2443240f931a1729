"""Tent: test-time entropy minimisation (Wang, Shelhamer, Liu, Olshausen & Darrell, ICLR 2021).

For each unlabeled test batch x, in order (online: the parameters carry over between batches),
``steps`` times::

    p = softmax(f(x))          H = (1/n) Σ_i −Σ_k p_ik log p_ik          θ ← θ − step(∂H/∂θ)

where θ holds only the affine parameters (scale γ and shift β) of the normalization layers and
every batch-statistics layer normalizes with the statistics of the current batch. The
predictions of a batch are those of its last forward pass, i.e. made before its last update
(as in the paper's online setting). Everything else is frozen and in eval mode (dropout off).

Optimizer (docs/papers.md §7, from memory there): SGD with momentum 0.9 at lr 0.00025 for
batch 64 on ImageNet; Adam (β = 0.9, 0.999) at lr 0.001 for batch 128 on the smaller datasets
(CIFAR, digits). The authors' CIFAR-10-C config (DequanWang/tent, cfgs/tent.yaml) has Adam at
lr 1e-3, one step per batch, with batch 200. normbench uses the ImageNet recipe for image-folder
datasets and the small-dataset recipe otherwise, with the learning rate scaled linearly from the
recipe's batch size.

The norm layers are found generically: torch's BN/IN/GN/LN modules and every module defined in
``normbench.norms`` that is not a weight layer (FRN, EvoNorm, NormProp's affine, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from normbench.engine.evaluate import predict
from normbench.norms.stats import require_defined_batch_stats, use_batch_stats_at_eval

if TYPE_CHECKING:
    from normbench.engine.fastpath import FastPath

TORCH_NORMS = (_NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class TentRecipe:
    """An optimizer setting of the paper: ``lr`` at ``batch_size`` samples per batch."""

    optimizer: str  # "adam" | "sgd"
    lr: float
    batch_size: int
    momentum: float = 0.9  # SGD's momentum, Adam's β₁

    def scaled_lr(self, batch_size: int) -> float:
        """The learning rate scaled linearly to ``batch_size``."""
        return self.lr * batch_size / self.batch_size

    def describe(self, lr: float) -> str:
        name = "Adam" if self.optimizer == "adam" else f"SGD momentum {self.momentum}"
        return f"{name}, lr {lr:g}"


#: Wang et al. 2021, §4: ImageNet; CIFAR-10/100 and digits.
IMAGENET_RECIPE = TentRecipe("sgd", 0.00025, 64)
SMALL_DATA_RECIPE = TentRecipe("adam", 0.001, 128)


def recipe_for(large_scale: bool) -> TentRecipe:
    """The paper's recipe for ImageNet-scale (image-folder) data or for small datasets."""
    return IMAGENET_RECIPE if large_scale else SMALL_DATA_RECIPE


def norm_layers(model: nn.Module) -> list[nn.Module]:
    """Every normalization module of ``model``: torch's norm layers and normbench's norm-slot
    modules (weight layers excluded)."""
    return [
        m
        for m in model.modules()
        if not isinstance(m, (nn.Linear, _ConvNd))
        and (isinstance(m, TORCH_NORMS) or type(m).__module__.startswith("normbench.norms."))
    ]


def norm_affine_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The affine scale and shift (``weight``, ``bias``) of every norm layer of ``model``."""
    params = []
    for layer in norm_layers(model):
        own = dict(layer.named_parameters(recurse=False))
        params += [own[name] for name in ("weight", "bias") if name in own]
    return params


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy −Σ_k p_k log p_k of softmax(logits), in float32 or wider."""
    wide = logits.dtype in (torch.float32, torch.float64)
    logp = (logits if wide else logits.float()).log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def tent_optimizer(
    params: list[nn.Parameter], recipe: TentRecipe, lr: float
) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params`` at learning rate ``lr``."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum)
    return torch.optim.Adam(params, lr=lr, betas=(recipe.momentum, 0.999))


@contextmanager
def tent_mode(model: nn.Module) -> Iterator[list[nn.Parameter]]:
    """Configure ``model`` for Tent; yields the parameters to adapt.

    Inside: eval mode, BN layers on batch statistics (buffers untouched), gradients only for
    the norm layers' affine parameters, and an error for undefined batch statistics. On exit
    modes, buffers and ``requires_grad`` flags are restored (the adapted values stay).
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    params = norm_affine_parameters(model)
    try:
        model.eval()
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        with use_batch_stats_at_eval(model), require_defined_batch_stats(model):
            yield params
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def tent_step(
    model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer, fast: FastPath | None
) -> torch.Tensor:
    """One forward, entropy backward and update on batch ``x``; the forward's logits (detached)."""
    with torch.enable_grad():
        logits = predict(model, x, fast)
        loss = prediction_entropy(logits).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return logits.detach()


def tent_predictions(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    steps: int,
    fast: FastPath | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Adapt online over ``batches`` (inside :func:`tent_mode`); yield each batch's logits
    (from its last forward) with its labels, which are never used for adaptation."""
    for x, y in batches:
        for _ in range(steps):
            logits = tent_step(model, x, optimizer, fast)
        yield logits, y
