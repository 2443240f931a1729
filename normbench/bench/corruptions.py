"""``normbench bench corruptions``: the cost of corrupting the evaluation data, per corruption,
relative to one forward pass of the evaluated model over the same images.

For each of the 19 corruptions (``normbench.data.corruptions``) at one severity, the time to
corrupt ``--images`` images in batches of ``--batch`` is measured and divided by the time of one
eval-mode forward pass of the model (default: the domain-shift study's ResNet-50 at width 0.125,
CIFAR stem, BN) over the same images. Corruption and forward are timed alternately per repeat
(so load from other processes hits both alike); a time is the median over repeats. On CUDA the
device is synchronized around each timed block.

Rows go to ``<out>/corruptions-<device>.csv`` (replacing the file), with the command, date,
device, torch version and thread count; the table is printed.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import torch
from omegaconf import OmegaConf

from normbench.bench import options
from normbench.bench.clock import wall_seconds
from normbench.bench.provenance import environment, write_rows
from normbench.data.corruptions import ALL_CORRUPTIONS, corrupt
from normbench.engine.build import build_network, build_norm

COLUMNS = [
    "corruption",
    "severity",
    "images",
    "ms_corrupt",
    "ms_forward",
    "ratio",
    "date",
    "device_name",
    "torch",
    "threads",
    "model",
    "conditions",
    "command",
]


def main(argv: list[str]) -> int:
    """Time every corruption against the model's forward pass; write the CSV. Returns 0."""
    parser = options.bench_parser(
        "corruptions", "Time to corrupt N images, per corruption, relative to one forward pass."
    )
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "vgg16"])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--severity", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--corruptions", default="all", help="comma-separated names, or all")
    options.add_repeats(parser, 3)
    options.add_device(parser)
    options.add_threads(parser)
    options.add_output(parser, readme_only=None)
    args = parser.parse_args(argv)
    names = list(ALL_CORRUPTIONS) if args.corruptions == "all" else args.corruptions.split(",")
    unknown = sorted(set(names) - set(ALL_CORRUPTIONS))
    if unknown:
        parser.error(f"--corruptions: unknown {', '.join(unknown)}")
    (device,) = options.devices(parser, args.device)
    options.apply_threads(args.threads)
    model_cfg = OmegaConf.create({"name": args.model, "width": args.width, "stem": "cifar"})
    shape = (args.channels, args.size, args.size)
    model = build_network(model_cfg, build_norm({"name": "batch"}), 10, shape).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, *shape, generator=gen).to(device)
    batches = images.split(args.batch)

    @torch.inference_mode()
    def forward() -> None:
        for xb in batches:
            model(xb)

    def corrupt_all(name: str) -> Callable[[], None]:
        def run() -> None:
            for i, xb in enumerate(batches):
                corrupt(xb, name, args.severity, seed=i)

        return run

    env = environment(device)
    command = options.command_line("corruptions", argv)
    forward()  # warm-up
    rows = []
    for name in names:
        corrupt(batches[0], name, args.severity, seed=0)  # warm-up
        t_corrupt, t_forward = [], []
        for _ in range(args.repeats):
            t_corrupt.append(wall_seconds(corrupt_all(name), device))
            t_forward.append(wall_seconds(forward, device))
        ms_c, ms_f = 1000 * statistics.median(t_corrupt), 1000 * statistics.median(t_forward)
        rows.append(
            {
                "corruption": name,
                "severity": args.severity,
                "images": args.images,
                "ms_corrupt": round(ms_c, 3),
                "ms_forward": round(ms_f, 3),
                "ratio": round(ms_c / ms_f, 3),
                "date": env["date"],
                "device_name": env["device_name"],
                "torch": env["torch"],
                "threads": env["threads"],
                "model": f"{args.model} width {args.width} cifar stem, BN, input {shape}",
                "conditions": args.conditions,
                "command": command,
            }
        )
        print(
            f"{name:18s} corrupt {ms_c:9.1f} ms  forward {ms_f:9.1f} ms  ratio {ms_c / ms_f:7.3f}",
            file=sys.stderr,
        )
    write_rows(args.out, f"corruptions-{device.type}.csv", COLUMNS, rows)
    return 0
