"""Share of a profiled training step spent in given modules (``normbench bench train``).

:class:`ModuleScopes` opens a profiler range around every forward of the modules (the norm
slots and weight parametrizations of a variant); :func:`module_share` then attributes a
``torch.profiler`` trace to them: the ranges' own time forward, and backward every autograd
node created inside a range (linked by autograd sequence numbers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function

NORM_SCOPE = "nb::norm"
STEP_SCOPE = "nb::step"
_BACKWARD_NODE = "autograd::engine::evaluate_function: "


class ModuleScopes:
    """While entered, every forward of the given modules runs inside a profiler range named
    ``name`` (forward pre/post hooks; removed on exit). Ops inside the range are the modules'
    forward work; :func:`module_share` links their backward through autograd sequence numbers.
    """

    def __init__(self, modules: Iterable[nn.Module], name: str = NORM_SCOPE) -> None:
        self.modules = list(modules)
        self.name = name
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._open: dict[int, list[record_function]] = defaultdict(list)

    def _pre(self, module: nn.Module, _args: Any) -> None:
        scope = record_function(self.name)  # entered here, exited in the post hook
        scope.__enter__()
        self._open[id(module)].append(scope)

    def _post(self, module: nn.Module, _args: Any, _out: Any) -> None:
        self._open[id(module)].pop().__exit__(None, None, None)

    def __enter__(self) -> ModuleScopes:
        for m in self.modules:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@dataclass(frozen=True)
class ModuleShare:
    """Seconds of profiled steps, and of the scoped modules' forward and backward in them.

    On CPU these are wall times of the main thread (backward runs there too); on CUDA they
    are kernel times (``step_s``: every kernel of the profile, launched by whichever op).
    """

    step_s: float
    forward_s: float
    backward_s: float
    backward_nodes: tuple[str, ...] = ()  # the autograd nodes counted as the modules' backward
    ranges: int = 0  # module forwards seen (outermost ranges)

    @property
    def share(self) -> float:
        """Share of step time in the modules, forward + backward (nan without steps)."""
        return (self.forward_s + self.backward_s) / self.step_s if self.step_s > 0 else math.nan


def module_share(events: Sequence[Any], cuda: bool, name: str = NORM_SCOPE) -> ModuleShare:
    """Attribute a profile's time to the ranges ``name`` opened by :class:`ModuleScopes`.

    ``events`` is ``torch.profiler.profile(...).events()`` over whole steps, each inside a
    ``record_function(STEP_SCOPE)`` range. Forward: the ranges themselves. Backward: every
    autograd node whose forward op ran inside such a range, found by the sequence number that
    autograd gives the node and the profiler records on the forward op. An op that creates no
    node (an in-place buffer update) records the number the *next* node will get, so numbers
    also seen on forward ops outside the ranges are left out.
    """

    def inside(event: Any) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name == name:
                return True
            parent = parent.cpu_parent
        return False

    cpu = [e for e in events if e.device_type == DeviceType.CPU]
    scopes, keys_in, keys_out, nodes, steps = [], set(), set(), [], []
    for e in cpu:
        if e.name == name:
            if not inside(e):
                scopes.append(e)
        elif e.name == STEP_SCOPE:
            steps.append(e)
        elif e.name.startswith(_BACKWARD_NODE):
            nodes.append(e)
        elif e.sequence_nr >= 0 and not getattr(e, "fwd_thread", 0):
            (keys_in if inside(e) else keys_out).add((e.thread, e.sequence_nr))
    keys = keys_in - keys_out
    norm_nodes = [e for e in nodes if (e.fwd_thread, e.sequence_nr) in keys]
    if cuda:
        total = sum(_device_self(e) for e in cpu)
        fwd = sum(_device_total(e) for e in scopes)
        bwd = sum(_device_total(e) for e in norm_nodes)
    else:
        total = sum(e.cpu_time_total for e in steps)
        fwd = sum(e.cpu_time_total for e in scopes)
        bwd = sum(e.cpu_time_total for e in norm_nodes)
    names = tuple(e.name[len(_BACKWARD_NODE) :] for e in norm_nodes)
    return ModuleShare(total / 1e6, fwd / 1e6, bwd / 1e6, names, len(scopes))


def _device_total(event: Any) -> float:
    """Device (kernel) time of an event and its children, under either torch's name for it."""
    return getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)


def _device_self(event: Any) -> float:
    """Device time of the kernels an event itself launched, under either torch's name for it."""
    value = getattr(event, "self_device_time_total", None)
    return value if value is not None else getattr(event, "self_cuda_time_total", 0.0)
