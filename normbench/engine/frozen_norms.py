"""FrozenBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", §5): from step S on, every
layer with batch statistics normalizes with its population statistics in the training forward
too, and stops updating them; its affine parameters (and every other weight) keep training.

``trainer.freeze_norm_stats_at=S`` turns it on. The population statistics are the layers'
running (EMA) statistics as they stand after step S. The layers are put in eval mode at the top
of every training step from S on, so an evaluation or a probe (which restore the whole model's
train mode) cannot undo it, and a run resumed past S is frozen again at its first step.
"""

from __future__ import annotations

from torch import nn

from normbench.errors import ConfigError
from normbench.norms.stats import bn_layers


class FrozenNormStats:
    """Freezes the batch-statistics layers of ``model`` for every training step after ``at``.

    Args:
        model: the trained model (the layers are shared with any DDP or compiled wrapper).
        at: the number of steps after which statistics are frozen; None: never.
        steps: the run's length (``at`` must lie inside it).

    Raises:
        ConfigError: ``at`` outside 0..steps, or a model without batch statistics.
    """

    def __init__(self, model: nn.Module, at: int | None, steps: int) -> None:
        self.at = at
        self.layers = bn_layers(model) if at is not None else []
        if at is None:
            return
        if not 0 <= at <= steps:
            raise ConfigError(
                f"trainer.freeze_norm_stats_at={at} is outside the run's 0..{steps} steps; "
                "choose a step inside it, or null."
            )
        if not self.layers:
            raise ConfigError(
                "trainer.freeze_norm_stats_at is set, but the model has no layer with running "
                "statistics to freeze (FrozenBN needs a BN-type norm); set it to null."
            )

    def frozen(self, step: int) -> bool:
        """Whether the training step after ``step`` steps runs with frozen statistics."""
        return self.at is not None and step >= self.at

    def apply(self, step: int) -> None:
        """Before the training step that follows ``step`` steps: freeze, when it is time."""
        if self.frozen(step):
            for layer in self.layers:
                layer.train(False)
