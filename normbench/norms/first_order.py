"""Hand-written backward passes are first-order only: a second derivative is a clear error.

normbench's custom ``torch.autograd.Function`` classes compute their gradient in closed form,
outside autograd. Through them a gradient has no graph of its own, so asking for one
(``torch.autograd.grad(..., create_graph=True)``: gradient penalties, Hessian-vector products,
meta-gradients) would silently drop their part of any second derivative. Their backward is
decorated with :func:`first_order_backward` instead: during a backward pass autograd enables
grad mode exactly when ``create_graph=True``, and the decorator then raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

Backward = TypeVar("Backward", bound=Callable[..., Any])

#: The variants (and implementations) whose layers are plain autograd ops, so twice differentiable.
TWICE_DIFFERENTIABLE = (
    "norm=batch with impl=native, sync_batch, mean_batch, noisy_batch, group, layer, instance, "
    "weight, ws_group or none"
)


def second_derivative_message(users: str, function: str) -> str:
    """The error for a second derivative through ``function`` (used by ``users``)."""
    return (
        f"{users}: the gradient is a hand-written backward ({function}) with first derivatives "
        "only, so it cannot be differentiated twice (torch.autograd.grad(..., create_graph=True) "
        "for gradient penalties, Hessian-vector products, meta-gradients). For double backward "
        f"use {TWICE_DIFFERENTIABLE}."
    )


def first_order_backward(users: str) -> Callable[[Backward], Backward]:
    """Decorate a Function's ``backward``: run it without a graph, raise under ``create_graph``.

    Replaces ``torch.autograd.function.once_differentiable``, whose gradient silently has no
    graph when the incoming gradient has none (``loss.sum()``), and otherwise fails only at
    the second backward with a message that names neither the variant nor a way out.

    Args:
        users: the variants (and ``impl``) computed by the Function, as the user selects them
            (``norm=batch (impl=closed_form)``).
    """

    def decorate(backward: Backward) -> Backward:
        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled():  # the backward pass of create_graph=True
                name = backward.__qualname__.rsplit(".", 1)[0]
                raise RuntimeError(second_derivative_message(users, name))
            return backward(ctx, *grads)

        return wrapper  # type: ignore[return-value]

    return decorate
