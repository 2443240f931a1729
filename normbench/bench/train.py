"""``normbench bench train``: where a training step's time goes, and how much is normalization.

For each mode (eager or ``torch.compile``, fp32 or bf16 autocast) and each normalization
variant, a model is trained for a few steps exactly as ``normbench train`` trains it: batches
from the in-memory loader (random crop and flip on the device), then
:func:`~normbench.engine.fastpath.train_step`, timed by the trainer's
:class:`~normbench.probes.timing.PhaseTimer` (CUDA events on GPU). Per variant and mode:

- ``step_ms``, ``images_per_s``, ``data_share``: median over repeats; data share is the
  trainer's data / (data + compute) split. ``step_ms_repeats``: every repeat's ms per step, in
  order, so that two variants can be paired repeat by repeat (they were timed in the same round).
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
section of ``<out>/README.md`` (see :mod:`normbench.bench.train_report`). This module is the
command line; the setups are built in :mod:`normbench.bench.train_setup` and measured in
:mod:`normbench.bench.train_timing`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from normbench.bench import options
from normbench.bench.train_report import stem_text
from normbench.bench.train_setup import BASELINE, MODES, synthetic_data
from normbench.bench.train_timing import log, run_all
from normbench.bench.variants import parse_variant, split_variants
from normbench.engine.environment import environment
from normbench.models import CNNS

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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options; ``--gpu-defaults`` swaps the CPU-scale defaults for the issue's GPU setting."""
    parser = options.bench_parser(
        "train",
        "Share of training-step time in normalization layers (forward + backward), eager vs "
        "compiled, fp32 vs bf16; images/s, step ms and the data share of the step.",
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
    options.add_repeats(parser, None, help="timed repeats (median)")
    options.add_warmup(parser, None, help="untimed steps first (compile happens here)")
    parser.add_argument(
        "--variants",
        help=(
            f"comma-separated norm variants (default: batch); the baseline {BASELINE!r} (identity "
            "slots, no conv bias) is always added"
        ),
    )
    parser.add_argument("--modes", help=f"comma-separated, from {', '.join(MODES)} (default: all)")
    options.add_device(parser, None, help="default: cpu (GPU defaults: cuda)")
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
    options.add_threads(parser)
    options.add_output(
        parser, "only redraw the PNGs and rewrite the README section from the existing CSVs"
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add rows to the existing CSV instead of replacing it (split a long run)",
    )
    args = parser.parse_args(argv)
    if args.readme_only:
        return args
    defaults = GPU_DEFAULTS if args.gpu_defaults else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("batch", "image_size", "train_size", "steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first steps build caches and compile)")
    if args.width <= 0:
        parser.error(f"--width must be > 0, got {args.width}")
    if "stem" not in CNNS[args.model].defaults:
        args.stem = "none"  # ConvPool-CNN-C: no stem option
    args.variant_list = _variants(args.variants)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.mode_list if m not in MODES]
    if unknown or not args.mode_list:
        parser.error(
            f"--modes: unknown {', '.join(unknown) or '(none)'}; known modes: {', '.join(MODES)}"
        )
    options.devices(parser, args.device)  # a usage error for cuda without CUDA
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
    """The variants of ``--variants`` (``name`` or ``name[key=value,...]``), checked, after the
    baseline."""
    names = split_variants(text)
    for v in names:
        if v != BASELINE:
            parse_variant(v)  # an unknown name or a malformed option: its message
    return [BASELINE] + [v for v in dict.fromkeys(names) if v != BASELINE]


def main(argv: list[str]) -> int:
    """Entry point of ``normbench bench train``."""
    from normbench.bench.train_report import rewrite_readme, write_outputs

    args = parse_args(argv)
    if args.readme_only:
        rewrite_readme(args.out, redraw=True)
        print(f"redrew the PNGs and rewrote the README section in {args.out}", file=sys.stderr)
        return 0
    options.apply_threads(args.threads)
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
    log(
        f"bench train on {device.type} ({env['device_name']}, torch {env['torch']}, {env['threads']} "
        f"threads): {args.model} width {args.width}{stem_text(args.stem)}, batch {args.batch}, "
        f"{args.image_size}x{args.image_size}; variants {', '.join(args.variant_list)}; "
        f"modes {', '.join(args.mode_list)}"
    )
    data = synthetic_data(args, device)
    if args.compare_ops:
        from normbench.bench import reference_ops

        path = reference_ops.run(args, argv, data, device, log)
        log(f"wrote {path}")
        return 0
    start = time.perf_counter()
    rows = [
        {**scale, **row} for row in run_all(args, args.mode_list, args.variant_list, data, device)
    ]
    log(f"measured in {time.perf_counter() - start:.0f} s")
    command = options.command_line("train", argv)
    write_outputs(rows, env, args.out, device.type, command, args.conditions, args.append)
    return 0
