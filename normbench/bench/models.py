"""``normbench bench models``: eval-mode forward time of our CNNs against torchvision's.

Our ResNet-50 (``norm=batch``, width 1, ImageNet stem, 1000 classes) against
``torchvision.models.resnet50``; optionally our VGG-16 (``norm=none``) against
``torchvision.models.vgg16``. Both networks of a pair hold the same weights (torchvision's
state_dict is loaded into ours, strictly) and see the same input, under
``torch.inference_mode`` in eval mode; the largest output difference is printed as a check.
The two are timed alternately (the first of a pair swaps every repeat, so load from other
processes hits them alike); a time is the median over repeats of one forward pass.
Target (issue 4): ours within 10% of torchvision on CPU.

One row per model is appended to ``<out>/models-<device>.csv``; the ``bench models`` section of
``<out>/README.md`` (between ``<!-- bench models -->`` markers) is then rewritten from every
such CSV, leaving the rest of the README alone. ``--readme-only`` rewrites just the section.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.bench import options
from normbench.bench.clock import wall_seconds
from normbench.bench.provenance import environment
from normbench.bench.readme_sections import rewrite_section, update_section
from normbench.engine.build import build_network, build_norm

SECTION = "bench models"
TARGET = 1.10
COLUMNS = [
    "date",
    "device_name",
    "torch",
    "threads",
    "model",
    "batch",
    "image_size",
    "repeats",
    "ms_ours",
    "ms_torchvision",
    "ratio",
    "within_target",
    "max_abs_diff",
    "conditions",
    "command",
]


def pair(model: str) -> tuple[nn.Module, nn.Module]:
    """Our model and torchvision's, holding the same (torchvision's random) weights."""
    import torchvision

    norm, reference = {
        "resnet50": ("batch", torchvision.models.resnet50),
        "vgg16": ("none", torchvision.models.vgg16),
    }[model]
    cfg = OmegaConf.create({"name": model, "width": 1.0, "stem": "imagenet"})
    ours = build_network(cfg, build_norm({"name": norm}), 1000, (3, 224, 224))
    theirs = reference(weights=None)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs.eval()


@torch.inference_mode()
def time_pair(
    ours: nn.Module, theirs: nn.Module, x: torch.Tensor, repeats: int, warmup: int
) -> tuple[float, float, float]:
    """Median ms of ours and torchvision's forward, and their largest output difference."""
    diff = (ours(x) - theirs(x)).abs().max().item()
    for _ in range(warmup):
        ours(x), theirs(x)
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for i in range(repeats):
        order = [("ours", ours), ("theirs", theirs)]
        for key, model in order if i % 2 == 0 else order[::-1]:
            times[key].append(1000 * wall_seconds(lambda m=model: m(x), x.device))
    return statistics.median(times["ours"]), statistics.median(times["theirs"]), diff


def append_rows(rows: list[dict], path: Path) -> None:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def readme_section(out: Path) -> str:
    """The ``bench models`` README section, from every ``models-<device>.csv`` in ``out``."""
    lines = [
        "## Models: forward time against torchvision",
        "",
        "Produced by `normbench bench models` (`normbench/bench/models.py`); every number in this "
        "section comes from that command. Our ResNet-50 (`norm=batch`, width 1, ImageNet stem, "
        "1000 classes) and `torchvision.models.resnet50` (with `--models vgg16`: our VGG-16, "
        "`norm=none`, and `torchvision.models.vgg16`) hold the same weights (torchvision's "
        "state_dict loaded into ours, strictly) and see the same input; eval mode, "
        "`torch.inference_mode`, the two timed alternately, median over repeats of one forward "
        f"each after warm-up forwards. Target (issue 4): ours within {TARGET - 1:.0%} of torchvision.",
        "",
    ]
    for path in sorted(out.glob("models-*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        device = path.stem.split("-", 1)[1]
        lines += [
            f"### {device}: data [{path.name}]({path.name})",
            "",
            "| date | device | torch | threads | model | batch | input | ms ours | ms torchvision "
            "| ratio | max abs output difference | within target | conditions |",
            "|---|---|---|---:|---|---:|---|---:|---:|---:|---:|---|---|",
        ]
        for r in rows:
            ok = {"True": "yes", "False": "**no**"}.get(r["within_target"], r["within_target"])
            lines.append(
                f"| {r['date']} | {r['device_name']} | {r['torch']} | {r['threads']} | {r['model']} "
                f"| {r['batch']} | 3x{r['image_size']}x{r['image_size']} | {r['ms_ours']} "
                f"| {r['ms_torchvision']} | {r['ratio']} | {float(r['max_abs_diff']):.2g} | {ok} "
                f"| {r['conditions']} |"
            )
        commands = list(dict.fromkeys(r["command"] for r in rows))
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Time the model pairs, print the ratios, append them to the CSV. Returns 0."""
    parser = options.bench_parser(
        "models", "Eval-mode forward time of our ResNet-50 / VGG-16 against torchvision's."
    )
    parser.add_argument("--models", default="resnet50", help="comma-separated: resnet50,vgg16")
    options.add_device(parser)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    options.add_repeats(parser, 9, help="timed forwards per model (median; default 9)")
    options.add_warmup(parser, 2, help="untimed forwards per model first (default 2)")
    options.add_threads(parser)
    options.add_output(parser)
    args = parser.parse_args(argv)
    if args.readme_only:
        rewrite_section(args.out, SECTION, readme_section(args.out))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - {"resnet50", "vgg16"})
    if unknown or not models:
        parser.error(f"--models: unknown {', '.join(unknown) or '(none)'}; known: resnet50, vgg16")
    (device,) = options.devices(parser, args.device)
    options.apply_threads(args.threads)
    env = environment(device)
    command = options.command_line("models", argv)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    rows = []
    for name in models:
        ours, theirs = (m.to(device) for m in pair(name))
        ms_ours, ms_theirs, diff = time_pair(ours, theirs, x, args.repeats, args.warmup)
        ratio = ms_ours / ms_theirs
        rows.append(
            {
                **env,
                "model": name,
                "batch": args.batch,
                "image_size": args.size,
                "repeats": args.repeats,
                "ms_ours": f"{ms_ours:.1f}",
                "ms_torchvision": f"{ms_theirs:.1f}",
                "ratio": f"{ratio:.3f}",
                "within_target": ratio <= TARGET,
                "max_abs_diff": f"{diff:.2e}",
                "conditions": args.conditions,
                "command": command,
            }
        )
        print(
            f"{name}: ours {ms_ours:.1f} ms, torchvision {ms_theirs:.1f} ms, ratio {ratio:.3f} "
            f"({'within' if ratio <= TARGET else 'OUTSIDE'} {TARGET - 1:.0%}), "
            f"max |Δ output| {diff:.1e}; batch {args.batch}x3x{args.size}x{args.size}, "
            f"{env['threads']} threads, {env['device_name']}"
        )
        del ours, theirs
    path = args.out / f"models-{device.type}.csv"
    append_rows(rows, path)
    update_section(args.out / "README.md", SECTION, readme_section(args.out))
    print(
        f"appended {len(rows)} row(s) to {path}; rewrote the '{SECTION}' section of "
        f"{args.out / 'README.md'}",
        file=sys.stderr,
    )
    return 0
