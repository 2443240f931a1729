"""``normbench bench train``: where a training step's time goes, and how much is normalization.

For each mode (eager or ``torch.compile``, fp32 or bf16 autocast) and each normalization
variant, a model is trained for a few steps exactly as ``normbench train`` trains it: batches
from the in-memory loader (random crop and flip on the device), then
:func:`~normbench.engine.fastpath.train_step`, timed by the trainer's
:class:`~normbench.probes.timing.PhaseTimer` (CUDA events on GPU). Per variant and mode:

- ``step_ms``, ``images_per_s``, ``data_share``: median over repeats; data share is the
  trainer's data / (data + compute) split.
- ``norm_share_profiled`` (eager modes): ``torch.profiler`` over ``--steps`` steps; forward
  time inside the norm modules (profiler ranges opened by forward hooks) plus the backward
  of every autograd node created inside them (linked by autograd sequence numbers), over the
  step time (see :func:`~normbench.bench.attribution.module_share`), less the attribution's own
  cost (a range's time around an identity slot of the baseline, per module forward). Norm
  modules are those the spec's ``layer`` built, plus the weight parametrizations of its
  ``conv``/``linear``.
- ``norm_share_differential``: (step time − step time of the ``identity`` baseline) / step
  time, in the same mode (``identity``: every norm slot an identity and the weight layers
  without bias, as in the normalized networks: their norm layers' work removed; ``norm=none``
  adds conv biases, so it is a variant like the others), median over repeats of the pair timed in the same repeat: the cross-check, and
  the only measure for compiled modes, where the norm's work is fused into generated kernels.

All setups are built and warmed up first (compiling, in compiled modes), then timed
round-robin across modes and variants, so that load from other processes hits all alike.
With ``--reference`` (on with ``--gpu-defaults``), each mode also times
:data:`REFERENCE`: torchvision's ResNet-50 (``torchvision.models.resnet50``; with the CIFAR stem,
its stem swapped for the 3×3 stride-1 conv without max-pool, the usual CIFAR adaptation, so the
network is ours layer for layer) in the plain loop of torchvision's classification reference
script (``references/classification/train.py``: autocast around forward and loss,
``zero_grad``, ``backward``, ``step``; without its per-step ``loss.item()``, which would only
slow it down), on the same batches, memory format, precision and compile mode. ``vs_reference``
(our ``batch`` row's images/s over the reference's, same mode) has the target
``REFERENCE_TARGET`` (in :mod:`~normbench.bench.train_report`).

Rows go to ``<out>/iteration-<device>.csv``, a PNG beside it, and the ``bench train``
section of ``<out>/README.md`` (see :mod:`normbench.bench.train_report`).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.bench.attribution import STEP_SCOPE, ModuleScopes, ModuleShare, module_share
from normbench.bench.variants import RecordingSpec, variant_config
from normbench.data.datasets import load_dataset
from normbench.engine.build import build_network, build_norm
from normbench.engine.environment import environment
from normbench.engine.fastpath import FastPath, train_step
from normbench.errors import ConfigError
from normbench.models import CNNS
from normbench.norms import known_norms
from normbench.probes.timing import PhaseTimer

MODES = ("eager-fp32", "eager-bf16", "compiled-fp32", "compiled-bf16")
# The differential's baseline: the normalized networks with the norm layers' work removed,
# i.e. identity slots and, unlike norm=none, no bias on the weight layers (whose bias the
# norm's shift makes redundant, so the normalized networks have none).
BASELINE = "identity"
CPU_DEFAULTS: dict[str, Any] = {
    "model": "resnet50",
    "width": 0.25,
    "stem": "cifar",
    "batch": 16,
    "image_size": 32,
    "steps": 3,
    "repeats": 5,
    "warmup": 2,
    "train_size": 512,
    "device": "cpu",
    "variants": "batch",
    "modes": ",".join(MODES),
    "channels_last": False,
    "reference": False,
}
# The GPU acceptance items: ResNet-50 (CIFAR stem, width 1, batch 128) in fp32 and
# bf16, and the data share of an in-memory dataset of CIFAR-10's size.
GPU_DEFAULTS: dict[str, Any] = {
    **CPU_DEFAULTS,
    "width": 1.0,
    "batch": 128,
    "steps": 10,
    "repeats": 5,
    "warmup": 5,
    "train_size": 50000,
    "device": "cuda",
    "variants": "batch,group",
    "channels_last": True,
    "reference": True,
}
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
    model_cfg = OmegaConf.create({"name": args.model, "width": args.width, "stem": args.stem})
    model = build_network(model_cfg, spec, data.num_classes, data.in_shape)
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(setup: Setup, steps: int, device: torch.device) -> None:
    """Untimed steps (the compile happens here in compiled modes); records their seconds."""
    start = time.perf_counter()
    for _ in range(steps):
        setup.step()
    _sync(device)
    setup.warmup_s = time.perf_counter() - start


def timed(setup: Setup, steps: int, device: torch.device) -> None:
    """``steps`` steps split into data and compute as the trainer does; appends seconds per step."""
    timer = PhaseTimer(device)
    for _ in range(steps):
        with timer.phase("data"):
            x, y = setup.loader.next()
            x = setup.fast.prepare_input(x)
        with timer.phase("train_step"):
            setup.train_step(setup.step_model, x, y, setup.optimizer, setup.fast)
    window = timer.window()
    setup.step_s.append((window["data"] + window["train_step"]) / steps)
    setup.data_s.append(window["data"] / steps)


def profile_steps(setup: Setup, steps: int, device: torch.device) -> tuple[Any, float]:
    """Profile ``steps`` steps of ``setup``, each in a ``STEP_SCOPE`` range, after one profiled,
    discarded step that warms the profiler up; the finished profiler and the wall seconds of
    the kept steps."""
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    plan = schedule(wait=0, warmup=1, active=steps, repeat=1)
    start = time.perf_counter()
    with profile(activities=activities, schedule=plan) as prof:
        for i in range(steps + 1):
            if i == 1:
                start = time.perf_counter()
            with record_function(STEP_SCOPE):
                setup.step()
            _sync(device)
            prof.step()
    return prof, time.perf_counter() - start


def profiled(setup: Setup, steps: int, device: torch.device) -> ModuleShare:
    """Profile ``steps`` steps with the norm modules scoped; the time in them."""
    with ModuleScopes(setup.norm_modules):
        prof, _ = profile_steps(setup, steps, device)
    return module_share(prof.events(), cuda=device.type == "cuda")


def profiled_columns(share: ModuleShare, steps: int, range_overhead_s: float) -> dict[str, float]:
    """Per-step milliseconds and the profiled share, less the attribution's own cost: the time a
    range around an identity slot takes (``range_overhead_s``, measured on the baseline) for
    every module forward, taken off the forward time and off the step."""
    hooks = range_overhead_s * share.ranges
    forward = max(0.0, share.forward_s - hooks)
    step = share.step_s - hooks
    return {
        "profiled_step_ms": 1000 * step / steps,
        "norm_fwd_ms": 1000 * forward / steps,
        "norm_bwd_ms": 1000 * share.backward_s / steps,
        "hook_overhead_ms": 1000 * hooks / steps,
        "norm_share_profiled": (forward + share.backward_s) / step if step > 0 else math.nan,
    }


def run_all(
    args: argparse.Namespace, modes: list[str], variants: list[str], data: Any, device: torch.device
) -> list[dict[str, Any]]:
    """Every variant in every mode: build and warm up all, time them round-robin (so load from
    other processes hits every mode and variant alike), profile the eager ones; a row each."""
    log = _log
    if any(m.startswith("compiled") for m in modes):
        _fresh_compile_cache(len(modes) * (len(variants) + 1))
    setups: dict[str, list[Setup]] = {}
    for mode in modes:
        setups[mode] = []
        for variant in variants + ([REFERENCE] if args.reference else []):
            if variant == REFERENCE:
                setup = build_reference_setup(args, mode, data, device)
            else:
                setup = build_setup(args, variant, mode, data, device)
            log(
                f"[{mode}] {setup.label}: {args.warmup} warm-up step(s)"
                + (" (compiling)" if setup.fast.compile else "")
            )
            warm_up(setup, args.warmup, device)
            log(f"[{mode}] {setup.label}: warm-up took {setup.warmup_s:.1f} s")
            setups[mode].append(setup)
    for r in range(args.repeats):
        for mode, group in setups.items():
            for setup in group:
                timed(setup, args.steps, device)
            log(
                f"repeat {r + 1}/{args.repeats} [{mode}]: "
                + ", ".join(f"{s.label} {1000 * s.step_s[-1]:.1f} ms" for s in group)
            )
    rows = []
    for mode, group in setups.items():
        for setup in group:
            rows.append(_row(args, mode, setup, group[0], device))
    return with_reference_ratio(rows)


def with_reference_ratio(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``vs_reference`` on each ``batch`` row: its images/s over the reference's, same mode."""
    reference = {r["mode"]: r["images_per_s"] for r in rows if r["variant"] == REFERENCE}
    for row in rows:
        row["vs_reference"] = (
            row["images_per_s"] / reference[row["mode"]]
            if row["variant"] == "batch" and row["mode"] in reference
            else math.nan
        )
    return rows


def _row(
    args: argparse.Namespace, mode: str, setup: Setup, baseline: Setup, device: torch.device
) -> dict[str, Any]:
    """Medians over repeats; the differential pairs each repeat with the baseline's same repeat
    (timed moments apart, under the same load)."""
    step_s, data_s = statistics.median(setup.step_s), statistics.median(setup.data_s)
    pairs = list(zip(setup.step_s, baseline.step_s, strict=True))
    row: dict[str, Any] = {
        "variant": setup.label,
        "mode": mode,
        "precision": setup.fast.precision,
        "compiled": setup.fast.compile,
        "step_ms": 1000 * step_s,
        "images_per_s": args.batch / step_s,
        "data_ms": 1000 * data_s,
        "data_share": data_s / step_s,
        "warmup_s": setup.warmup_s,
        "norm_ms_differential": 1000 * statistics.median(v - b for v, b in pairs),
        "norm_share_differential": min(
            1.0, max(0.0, statistics.median((v - b) / v for v, b in pairs))
        ),
        "profiled_step_ms": math.nan,
        "norm_fwd_ms": math.nan,
        "norm_bwd_ms": math.nan,
        "hook_overhead_ms": math.nan,
        "norm_share_profiled": math.nan,
        "note": "",
    }
    if setup.variant == REFERENCE:
        row["note"] = (
            "torchvision's resnet50 in its reference training loop; the norm shares are not "
            "measured for it"
        )
        row["norm_ms_differential"] = row["norm_share_differential"] = math.nan
    elif setup.fast.compile:
        row["note"] = "compiled: norm work is fused into generated kernels; differential share only"
    elif not args.profile:
        row["note"] = "not profiled (--no-profile); differential share only"
    else:
        _log(f"[{mode}] {setup.label}: profiling {args.steps} step(s)")
        share = profiled(setup, args.steps, device)
        if setup is baseline and share.ranges:  # profiled first: identity slots, pure overhead
            setup.range_overhead_s = share.forward_s / share.ranges
        row.update(profiled_columns(share, args.steps, baseline.range_overhead_s))
    return row


def _fresh_compile_cache(models: int) -> None:
    """Forget earlier modes' compiled code, and let every model of this mode keep its own: the
    models share their ``forward`` code objects, and dynamo caches a limited number of
    compilations per code object (beyond it, it would silently run the model eagerly)."""
    import torch._dynamo

    torch._dynamo.reset()
    config = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):  # the name changed across versions
        if hasattr(config, key):
            setattr(config, key, max(getattr(config, key), 2 * models + 8))
            break


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options; ``--gpu-defaults`` swaps the CPU-scale defaults for the issue's GPU setting."""
    parser = argparse.ArgumentParser(
        prog="normbench bench train",
        description="Share of training-step time in normalization layers (forward + backward), "
        "eager vs compiled, fp32 vs bf16; images/s, step ms and the data share of the step.",
    )
    parser.add_argument(
        "--gpu-defaults",
        action="store_true",
        help=(
            "the GPU acceptance setting: --device cuda --width 1 --batch 128 --channels-last "
            f"--steps {GPU_DEFAULTS['steps']} --repeats {GPU_DEFAULTS['repeats']} --warmup "
            f"{GPU_DEFAULTS['warmup']} --train-size 50000 --variants {GPU_DEFAULTS['variants']} "
            "(explicit options still win)"
        ),
    )
    parser.add_argument("--model", choices=sorted(CNNS), help="default: resnet50")
    parser.add_argument("--width", type=float, help="channel multiplier (default 0.25; GPU 1)")
    parser.add_argument("--stem", choices=["cifar", "imagenet"], help="default: cifar")
    parser.add_argument("--batch", type=int, help="images per step (default 16; GPU 128)")
    parser.add_argument("--image-size", type=int, help="input height and width (default 32)")
    parser.add_argument("--train-size", type=int, help="examples in the in-memory training set")
    parser.add_argument("--steps", type=int, help="steps per timed repeat and per profile")
    parser.add_argument("--repeats", type=int, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (compile happens here)")
    parser.add_argument(
        "--variants",
        help=(
            f"comma-separated norm variants (default: batch); the baseline {BASELINE!r} (identity "
            "slots, no conv bias) is always added"
        ),
    )
    parser.add_argument("--modes", help=f"comma-separated, from {', '.join(MODES)} (default: all)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], help="default: cpu (GPU defaults: cuda)"
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last model and batches (default: off on CPU, on with --gpu-defaults)",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "also time torchvision's ResNet-50 in its reference training loop (same batches, "
            "precision, memory format, compile mode); needs --model resnet50 --width 1 (default: on "
            "with --gpu-defaults)"
        ),
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile the eager modes for the norm share (default: on; the slow part of a run)",
    )
    parser.add_argument(
        "--compare-ops",
        action="store_true",
        help=(
            "instead of the timing table: profile ours (batch) and the torchvision reference in "
            "each mode, operator by operator, into ops-vs-reference-<device>.csv (where a "
            "vs_reference gap comes from); needs --model resnet50 --width 1"
        ),
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="output directory")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add rows to the existing CSV instead of replacing it (split a long run)",
    )
    parser.add_argument(
        "--conditions", default="", help="free text recorded with the rows (machine load ...)"
    )
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="only redraw the PNGs and rewrite the README section from the existing CSVs",
    )
    args = parser.parse_args(argv)
    if args.readme_only:
        return args
    defaults = GPU_DEFAULTS if args.gpu_defaults else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("batch", "image_size", "train_size", "steps", "repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first steps build caches and compile)")
    if args.width <= 0:
        parser.error(f"--width must be > 0, got {args.width}")
    args.variant_list = _variants(args.variants)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.mode_list if m not in MODES]
    if unknown or not args.mode_list:
        parser.error(
            f"--modes: unknown {', '.join(unknown) or '(none)'}; known modes: {', '.join(MODES)}"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    if (args.reference or args.compare_ops) and (args.model != "resnet50" or args.width != 1):
        option = "--compare-ops" if args.compare_ops else "--reference"
        parser.error(
            f"{option} compares with torchvision's ResNet-50: use --model resnet50 --width 1 "
            f"(got --model {args.model} --width {args.width})"
        )
    if args.train_size < args.batch:
        parser.error(f"--train-size {args.train_size} is smaller than --batch {args.batch}")
    return args


def _variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known_norms() and v != BASELINE]
    if unknown:
        raise ConfigError(
            f"unknown variant(s) {', '.join(map(repr, unknown))} in --variants; known variants: "
            f"{', '.join(known_norms())}."
        )
    return [BASELINE] + [v for v in dict.fromkeys(names) if v != BASELINE]


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


def main(argv: list[str]) -> int:
    """Entry point of ``normbench bench train``."""
    from normbench.bench.train_report import rewrite_readme, write_outputs

    args = parse_args(argv)
    if args.readme_only:
        rewrite_readme(args.out, redraw=True)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(device)
    scale = {
        "model": args.model,
        "width": args.width,
        "stem": args.stem,
        "batch": args.batch,
        "image_size": args.image_size,
        "channels_last": args.channels_last,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    _log(
        f"bench train on {device.type} ({env['device_name']}, torch {env['torch']}, {env['threads']} "
        f"threads): {args.model} width {args.width} {args.stem} stem, batch {args.batch}, "
        f"{args.image_size}x{args.image_size}; variants {', '.join(args.variant_list)}; "
        f"modes {', '.join(args.mode_list)}"
    )
    data = synthetic_data(args, device)
    if args.compare_ops:
        from normbench.bench import reference_ops

        path = reference_ops.run(args, argv, data, device, _log)
        _log(f"wrote {path}")
        return 0
    start = time.perf_counter()
    rows = [
        {**scale, **row} for row in run_all(args, args.mode_list, args.variant_list, data, device)
    ]
    _log(f"measured in {time.perf_counter() - start:.0f} s")
    command = "normbench bench train " + shlex.join(argv)
    write_outputs(rows, env, args.out, device.type, command, args.conditions, args.append)
    return 0
