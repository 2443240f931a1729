"""What ``normbench bench train`` times: a norm variant (or torchvision's reference network in
its reference loop) built and ready to take training steps in one mode.

A *mode* is eager or ``torch.compile``, fp32 or bf16 autocast (:data:`MODES`). A variant's
model is built exactly as ``normbench train`` builds it (``engine/build.py``), its norm spec
wrapped in :class:`~normbench.bench.variants.RecordingSpec` so that the norm modules are known;
the batches come from the in-memory loader of a CIFAR-shaped synthetic dataset
(:func:`synthetic_data`), and a step is :func:`~normbench.engine.fastpath.train_step`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.bench.variants import RecordingSpec, variant_config
from normbench.data.datasets import load_dataset
from normbench.engine.build import build_network, build_norm
from normbench.engine.fastpath import FastPath, train_step
from normbench.models import CNNS

MODES = ("eager-fp32", "eager-bf16", "compiled-fp32", "compiled-bf16")
# The differential's baseline: the normalized networks with the norm layers' work removed,
# i.e. identity slots and, unlike norm=none, no bias on the weight layers (whose bias the
# norm's shift makes redundant, so the normalized networks have none).
BASELINE = "identity"
SGD = {"lr": 1e-3, "momentum": 0.9}  # small steps: no variant (norm=none included) diverges
REFERENCE = "torchvision-reference"


@dataclass
class Setup:
    """One variant in one mode, ready to step: model, optimizer, loader, norm modules."""

    variant: str
    label: str
    model: nn.Module  # the plain module (hooks, parameters)
    step_model: nn.Module  # compiled or the plain module
    optimizer: torch.optim.Optimizer
    loader: Any
    fast: FastPath
    norm_modules: list[nn.Module]
    warmup_s: float = 0.0
    range_overhead_s: float = 0.0  # the profiler range's own time per module forward (baseline)
    step_s: list[float] = field(default_factory=list)
    data_s: list[float] = field(default_factory=list)
    train_step: Any = train_step  # (model, x, y, optimizer, fast): ours, or the reference loop's

    def step(self) -> torch.Tensor:
        x, y = self.loader.next()
        return self.train_step(
            self.step_model, self.fast.prepare_input(x), y, self.optimizer, self.fast
        )


def build_setup(
    args: argparse.Namespace, variant: str, mode: str, data: Any, device: torch.device
) -> Setup:
    """Model, optimizer and loader of ``variant`` in ``mode`` (``eager-fp32`` ...)."""
    torch.manual_seed(0)
    if variant == BASELINE:
        spec, label = RecordingSpec(build_norm({"name": "none"}), has_shift=True), BASELINE
    else:
        norm_cfg, label = variant_config(variant, args.model, args.width)
        spec = RecordingSpec(build_norm(norm_cfg))
    model_cfg = {"name": args.model, "width": args.width}
    if "stem" in CNNS[args.model].defaults:  # ConvPool-CNN-C has none
        model_cfg["stem"] = args.stem
    model = build_network(OmegaConf.create(model_cfg), spec, data.num_classes, data.in_shape)
    return _setup(args, mode, data, device, variant, label, model, spec.modules)


def _setup(
    args: argparse.Namespace,
    mode: str,
    data: Any,
    device: torch.device,
    variant: str,
    label: str,
    model: nn.Module,
    norm_modules: list[nn.Module],
    step: Any = train_step,
) -> Setup:
    """``model`` on ``device`` in ``mode`` (precision, compile), with its SGD and loader."""
    model = model.to(device).train()
    compiled, precision = mode.split("-")
    fast = FastPath(
        device,
        None if precision == "fp32" else precision,
        args.channels_last,
        compiled == "compiled",
    )
    step_model = fast.prepare_model(model)
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    loader = data.train_loader(args.batch, seed=0)
    return Setup(
        variant, label, model, step_model, optimizer, loader, fast, norm_modules, train_step=step
    )


def reference_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, fast: Any
) -> torch.Tensor:
    """One step of torchvision's classification reference loop (``train_one_epoch``): forward
    and loss under autocast, ``zero_grad()``, ``backward()``, ``step()``."""
    with torch.autocast(
        device_type=x.device.type, dtype=torch.bfloat16, enabled=fast.amp is not None
    ):
        loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def reference_model(args: argparse.Namespace, num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 with ``num_classes`` outputs; the CIFAR stem swapped in when asked."""
    import torchvision

    model = torchvision.models.resnet50(num_classes=num_classes)
    if args.stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def build_reference_setup(
    args: argparse.Namespace, mode: str, data: Any, device: torch.device
) -> Setup:
    """torchvision's ResNet-50 in the reference loop, in ``mode``, on the same batches."""
    torch.manual_seed(0)
    model = reference_model(args, data.num_classes)
    return _setup(args, mode, data, device, REFERENCE, REFERENCE, model, [], reference_step)


def synthetic_data(args: argparse.Namespace, device: torch.device) -> Any:
    """A CIFAR-shaped in-memory dataset on ``device`` with on-device crop (4 px) and flip."""
    cfg = OmegaConf.create(
        {
            "name": "synthetic",
            "root": "data",
            "batch_size": args.batch,
            "val_split": "test",
            "holdout_size": 1,
            "standardize": False,
            "download": False,
            "num_train": args.train_size,
            "num_val": args.batch,
            "num_classes": 10,
            "image_shape": [3, args.image_size, args.image_size],
            "augment": True,
            "crop_padding": min(4, args.image_size - 1),
            "flip": True,
        }
    )
    return load_dataset(cfg, device)
