"""``normbench bench inference``: per-image latency at small inference batches, for each norm
and for BN folded into the convolutions before it (normbench/models/fold.py).

The models are built untrained (latency does not depend on the weights' values) in eval mode,
one per case: ``none`` (no norm: the floor), BN, BN folded, Batch Renorm, Batch Renorm folded,
GN, LN and FRN (``--norms``). A folded model is a flat ``torch.fx`` graph, which at b = 1 saves
the nested model's per-layer Python calls whatever the norm, so when a folded case is timed the
no-norm network is timed in that form too (``none+fx``: through the same :func:`fold_norms`,
its empty norm slots dropped): the like-for-like floor of a folded network. For each inference
batch size b (``--batches``, default 1) a repeat times ``--calls`` forward passes of every case
in turn (interleaved, so that load from other processes hits all cases alike); a case's time is
the median over repeats, per image, and its ratio is to ``none`` at the same b. Folded models
are checked first: their outputs must equal the unfolded model's (float32 tolerance), or the
bench stops.

Rows go to ``<out>/inference-<device>.csv`` (replacing the file) with the command, date,
device, torch version, thread count and load average; the table is printed.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.bench import options
from normbench.bench.clock import per_call_timer
from normbench.bench.provenance import environment, load_average, write_rows
from normbench.engine.build import build_network, build_norm
from normbench.models.fold import fold_norms

#: norm configs of the cases (GN's group count fits every width-0.125 slot, as in small_batch)
NORMS = {
    "none": {"name": "none"},
    "batch": {"name": "batch"},
    "batch_renorm": {"name": "batch_renorm"},
    "group": {"name": "group", "num_groups": 4},
    "layer": {"name": "layer"},
    "frn": {"name": "frn"},
}
FOLD = ("batch", "batch_renorm")
COLUMNS = [
    "case",
    "norm",
    "folded",
    "batch",
    "ms_per_image",
    "ratio_to_none",
    "norm_layers_left",
    "date",
    "device_name",
    "torch",
    "threads",
    "load_average",
    "model",
    "conditions",
    "command",
]


def cases(model_cfg, norms: list[str], shape: tuple[int, ...]) -> dict[str, tuple[nn.Module, int]]:
    """Case name -> (eval-mode model, BN-type layers left in it)."""
    built: dict[str, tuple[nn.Module, int]] = {}
    for norm in norms:
        torch.manual_seed(0)
        model = build_network(model_cfg, build_norm(NORMS[norm]), 10, shape).eval()
        built[norm] = (model, 0)
        if norm == "none" and any(n in FOLD for n in norms):
            built["none+fx"] = (fold_norms(model).model, 0)
        if norm in FOLD:
            folded = fold_norms(model)
            x = torch.randn(4, *shape)
            with torch.inference_mode():
                torch.testing.assert_close(folded.model(x), model(x), rtol=1e-4, atol=1e-5)
            built[f"{norm}+folded"] = (folded.model, folded.left)
    return built


def main(argv: list[str]) -> int:
    """Time every case's forward pass per image at each batch size; write the CSV. Returns 0."""
    parser = options.bench_parser(
        "inference", "Per-image inference latency at small batches: norms, and BN folded."
    )
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "vgg16"])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--batches", default="1", help="inference batch sizes, e.g. 1,8,64")
    parser.add_argument(
        "--norms", default=",".join(NORMS), help="comma-separated, from: " + ",".join(NORMS)
    )
    parser.add_argument("--calls", type=int, default=50, help="forward passes per timing")
    options.add_repeats(parser, 7)
    options.add_device(parser)
    options.add_threads(parser)
    options.add_output(parser, readme_only=None)
    args = parser.parse_args(argv)
    norms = args.norms.split(",")
    unknown = sorted(set(norms) - set(NORMS))
    if unknown:
        parser.error(f"--norms: unknown {', '.join(unknown)}; choose from {', '.join(NORMS)}")
    if "none" not in norms:
        norms.insert(0, "none")  # the floor every ratio is to
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches {args.batches}: expected integers, e.g. 1,8,64")
    (device,) = options.devices(parser, args.device)
    options.apply_threads(args.threads)
    shape = (args.channels, args.size, args.size)
    model_cfg = OmegaConf.create({"name": args.model, "width": args.width, "stem": "cifar"})
    built = {k: (m.to(device), left) for k, (m, left) in cases(model_cfg, norms, shape).items()}
    timer = per_call_timer(device)
    env, command = environment(device), options.command_line("inference", argv)
    rows = []
    for b in batches:
        x = torch.randn(b, *shape, device=device)
        calls: dict[str, Callable[[], None]] = {}
        for name, (model, _) in built.items():

            def call(model: nn.Module = model, x: torch.Tensor = x) -> None:
                model(x)

            calls[name] = call
        times: dict[str, list[float]] = {name: [] for name in calls}
        with torch.inference_mode():
            for call in calls.values():
                timer(call, 3)  # warm-up
            for _ in range(args.repeats):
                for name, call in calls.items():
                    times[name].append(timer(call, args.calls) / b)
        floor = statistics.median(times["none"])
        for name, spent in times.items():
            ms = 1000 * statistics.median(spent)
            rows.append(
                {
                    "case": name,
                    "norm": name.split("+")[0],
                    "folded": name.endswith("+folded"),
                    "batch": b,
                    "ms_per_image": round(ms, 4),
                    "ratio_to_none": round(ms / (1000 * floor), 3),
                    "norm_layers_left": built[name][1],
                    **{k: env[k] for k in ("date", "device_name", "torch", "threads")},
                    "load_average": load_average(),
                    "model": f"{args.model} width {args.width}, input {shape}, untrained, eval",
                    "conditions": args.conditions,
                    "command": command,
                }
            )
            print(
                f"b={b:<4d} {name:20s} {ms:9.3f} ms/image  x{ms / (1000 * floor):.3f} of none",
                file=sys.stderr,
            )
    write_rows(args.out, f"inference-{device.type}.csv", COLUMNS, rows)
    return 0
