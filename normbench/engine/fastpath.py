"""The fast path of the training loop: bf16 autocast, channels_last, torch.compile.

Three ``trainer.*`` flags, all off by default:

- ``trainer.amp=bf16``: forward and loss under ``torch.autocast`` with bfloat16, in training
  and in evaluation (bf16 keeps fp32's exponent range: no GradScaler). Parameters, gradients
  and optimizer state stay fp32. The activation probes run in fp32.
- ``trainer.channels_last=true``: the model's 4-d weights and every 4-d input batch in the
  channels_last (NHWC) memory format; a no-op for the MLP and its flat inputs.
- ``trainer.compile=true``: the training forward runs through ``torch.compile``. The compiled
  wrapper shares its parameters with the plain module, which stays the one that is evaluated,
  probed (forward hooks see it run eagerly) and checkpointed, so a checkpoint's state dict is
  the same with and without compile and a run may be resumed either way.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from normbench.config import CHOICES
from normbench.errors import ConfigError

#: ``trainer.amp`` values besides false (validated with the other choices in normbench.config).
AMP_MODES = tuple(c for c in CHOICES["trainer.amp"] if c is not False)


@dataclass(frozen=True)
class FastPath:
    """What ``trainer.amp``, ``trainer.channels_last`` and ``trainer.compile`` resolved to."""

    device: torch.device
    amp: str | None = None  # None: fp32; "bf16": autocast to bfloat16
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, tcfg: Any, device: torch.device) -> FastPath:
        """Read the flags from the ``trainer`` config node (missing keys: off)."""
        amp = tcfg.get("amp", False)
        amp = None if amp in (False, None) else amp  # checked by normbench.config.validate
        return cls(
            device, amp, bool(tcfg.get("channels_last", False)), bool(tcfg.get("compile", False))
        )

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast context of forward and loss (a no-op in fp32)."""
        if self.amp is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Convert ``model`` in place to channels_last (when asked); return the module to train
        with: ``torch.compile(model)`` or ``model`` itself."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # only 4-d parameters and buffers change
        if self.compile:
            return torch.compile(model)
        return model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory format (channels_last for 4-d inputs, when asked)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def as_dict(self) -> dict[str, Any]:
        """The flags as recorded in summary.json's environment."""
        return {
            "amp": self.amp or False,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }

    @property
    def precision(self) -> str:
        """``fp32`` or the autocast dtype's name."""
        return self.amp or "fp32"


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    fast: FastPath,
) -> torch.Tensor:
    """One optimizer step on ``(x, y)``: forward and loss under autocast, backward, update.

    Returns the (undetached) loss. A compiled model whose backend cannot build (no C++
    compiler for inductor on CPU, say) fails with a message naming the fix.
    """
    with fast.autocast():
        loss = _compiled_call(lambda: F.cross_entropy(model(x), y), fast.compile)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _compiled_call(fn: Callable[[], torch.Tensor], compiled: bool) -> torch.Tensor:
    if not compiled:
        return fn()
    try:
        return fn()
    except Exception as err:  # torch._dynamo.exc.BackendCompilerFailed and kin
        if type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise ConfigError(
                f"trainer.compile=true: torch.compile could not build the model ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). On CPU, inductor needs a working C++ "
                "compiler (g++); run with trainer.compile=false."
            ) from err
        raise
