"""Optimizer and learning-rate schedule from the ``optim`` config group."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from normbench.errors import ConfigError


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (optionally with momentum / Nesterov / weight decay) or Adam (``optim=adam``)."""
    if cfg.name == "adam":
        betas = tuple(float(b) for b in cfg.get("betas", (0.9, 0.999)))
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(betas)}.")
        return torch.optim.Adam(
            model.parameters(),
            lr=cfg.lr,
            betas=betas,
            eps=float(cfg.get("eps", 1e-8)),
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def build_scheduler(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule, times a linear warm-up.

    - ``constant``; ``cosine`` to 0 over ``total_steps``; ``step``: × ``gamma`` at each milestone;
    - ``linear``: constant until the first milestone (step 0 without one), then linearly to 0 at
      ``total_steps`` (the Weight Normalization paper's decay over its last 100 of 200 epochs);
    - ``warmup_steps`` = W > 0: the factor is further multiplied by (step + 1) / W for the first
      W steps (gradual warm-up, Goyal et al. 2017), so the first step already moves.
    """
    milestones = sorted(int(m) for m in cfg.milestones)
    warmup = int(cfg.get("warmup_steps", 0) or 0)
    start = milestones[0] if milestones else 0

    def schedule(step: int) -> float:
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= m for m in milestones)
        if cfg.schedule == "linear" and step > start:
            return max(0.0, (total_steps - step) / max(1, total_steps - start))
        return 1.0

    def factor(step: int) -> float:
        return schedule(step) * (min(1.0, (step + 1) / warmup) if warmup else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
