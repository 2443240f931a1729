"""``normbench bench lstm``: forward+backward time of our LSTM cell against ``torch.nn.LSTM``.

Our cell (``model=lstm``, ``norm=none``, ``model.impl=cell``: the step-by-step unroll of
normbench/models/lstm.py, built through :func:`~normbench.engine.build.build_network`) and
``torch.nn.LSTM`` (torch's fused kernel, what ``model.impl=auto`` runs for ``norm=none``) hold the
same weights and read the same batch of sequences (default: 64 Fashion-MNIST-sized images read row
by row, 28 steps of 28 values, 100 hidden units); the largest difference of their outputs is
printed as a check. What is timed is one forward and backward of the recurrent part: the top
layer's outputs h_1 … h_T and the gradients of the input and every weight for a random
upstream gradient, in training mode, eager and, unless ``--no-compile``, through
``torch.compile`` (inductor; the first call's compile time is recorded apart). ``--norms`` adds our
cell with a norm in its slots (``batch:per_step``, ``layer`` ...) for context.

Cases are timed round-robin within each repeat (load from other processes hits them alike); a
case's time is the median over repeats of the mean over an inner loop sized to last ≥ 20 ms.
*ratio* is a case's ms over eager ``torch.nn.LSTM``'s. Target (issue 22): our cell with
``norm=none`` within :data:`TARGET` × eager ``torch.nn.LSTM`` on CPU.

Rows go to ``<out>/lstm-<device>.csv`` (on CPU ``lstm-cpu-<threads>t.csv``; one file per
thread count, rewritten by each run) and the ``bench lstm`` section of ``<out>/README.md`` is
rewritten from every such CSV; ``--readme-only`` rewrites just the section.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.bench import options
from normbench.bench.clock import per_call_timer, sync
from normbench.bench.norm_timing import raise_compile_cache_limit
from normbench.bench.provenance import environment, load_average, write_rows
from normbench.bench.readme_sections import rewrite_section, update_section
from normbench.engine.build import build_network, build_norm

SECTION = "bench lstm"
TARGET = 3.0
MIN_REPEAT_S = 0.02
REFERENCE = "torch.nn.LSTM"
COLUMNS = [
    "date",
    "device",
    "device_name",
    "torch",
    "threads",
    "load_start",
    "load_end",
    "case",
    "compiled",
    "batch",
    "steps",
    "features",
    "hidden",
    "layers",
    "repeats",
    "ms",
    "ratio",
    "within_target",
    "compile_s",
    "max_abs_diff",
    "conditions",
    "command",
]


def cell(norm: str, hidden: int, layers: int, shape: tuple[int, int, int]) -> nn.Module:
    """Our LSTM (``model.impl=cell``); ``norm`` is ``name`` or ``name:placement``."""
    name, _, placement = norm.partition(":")
    cfg = {"name": "lstm", "hidden": hidden, "layers": layers, "impl": "cell"}
    if placement:
        cfg["placement"] = placement
    return build_network(OmegaConf.create(cfg), build_norm({"name": name}), 10, shape)


class Unrolled(nn.Module):
    """Our cell's recurrent part: (T, N, F) sequences -> the top layer's (T, N, hidden)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.layers = model.layers

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            seq = layer(seq)
        return seq


class TorchLSTM(nn.Module):
    """``torch.nn.LSTM`` holding the weights of our cell's layers (norm=none)."""

    def __init__(self, ours: Unrolled) -> None:
        super().__init__()
        first = ours.layers[0]
        self.lstm = nn.LSTM(first.ih.in_features, first.hidden, num_layers=len(ours.layers))
        with torch.no_grad():
            for k, layer in enumerate(ours.layers):
                getattr(self.lstm, f"weight_ih_l{k}").copy_(layer.ih.weight)
                getattr(self.lstm, f"weight_hh_l{k}").copy_(layer.hh.weight)
                getattr(self.lstm, f"bias_ih_l{k}").copy_(layer.bias_ih)
                getattr(self.lstm, f"bias_hh_l{k}").copy_(layer.bias_hh)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.lstm(seq)[0]


def step_fn(
    module: nn.Module, seq: torch.Tensor, dy: torch.Tensor, compiled: bool
) -> Callable[[], None]:
    """One forward+backward of ``module`` on ``seq`` (through ``torch.compile`` when asked)."""
    params = list(module.parameters())
    forward = torch.compile(module, dynamic=False) if compiled else module

    def step() -> None:
        torch.autograd.grad(forward(seq), [seq, *params], dy)

    return step


def time_cases(
    cases: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(median ms per call of every case, seconds of each case's first call: its compile)."""
    timer = per_call_timer(device)
    first, inner = {}, {}
    for name, fn in cases.items():
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        first[name] = time.perf_counter() - start
        for _ in range(warmup):
            fn()
        once = max(timer(fn, 1), 1e-6)
        inner[name] = max(1, int(MIN_REPEAT_S / once))
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(1000 * timer(fn, inner[name]))
    return {k: statistics.median(v) for k, v in times.items()}, first


def readme_section(out: Path) -> str:
    """The ``bench lstm`` README section, from every ``lstm-<device>.csv`` in ``out``."""
    lines = [
        "## LSTM: our cell against torch.nn.LSTM",
        "",
        "Produced by `normbench bench lstm` (`normbench/bench/lstm.py`); every number here comes "
        "from that command. Our cell (`model=lstm norm=none model.impl=cell`: the step-by-step "
        "unroll whose norm slots the recurrent study fills) and `torch.nn.LSTM` hold the same "
        "weights and read the same sequences; one forward and backward of the recurrent part "
        "(gradients of the input and every weight), training mode, median over repeats, the "
        "cases interleaved. *ratio* = ms / eager torch.nn.LSTM's ms; *compile s*: the first "
        "call's time of a compiled case (its compilation, unless inductor's on-disk cache "
        "already held the graph from an earlier run: then seconds). "
        f"Target (issue 22): our cell within {TARGET:g}× eager "
        "torch.nn.LSTM on CPU. Rows with a norm are our cell with that norm in its slots, for "
        "context.",
        "",
    ]
    for path in sorted(out.glob("lstm-*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        r0 = rows[0]
        lines += [
            f"### {path.stem.removeprefix('lstm-')}: data [{path.name}]({path.name})",
            "",
            f"{r0['device_name']}, torch {r0['torch']}, {r0['threads']} threads, {r0['date']}; "
            f"batch {r0['batch']}, {r0['steps']} steps of {r0['features']} values, "
            f"{r0['hidden']} hidden units, {r0['layers']} layer(s). 1-minute load average "
            f"{r0['load_start']} at the start, {r0['load_end']} at the end. Conditions: "
            f"{r0['conditions'] or '–'}. Command: `{r0['command']}`.",
            "",
            "| case | compiled | ms | ratio | within target | compile s | max abs output diff |",
            "|---|---|---:|---:|---|---:|---:|",
        ]
        for r in rows:
            ok = {"True": "yes", "False": "**no**"}.get(r["within_target"], r["within_target"])
            lines.append(
                f"| {r['case']} | {r['compiled']} | {r['ms']} | {r['ratio']} | {ok} "
                f"| {r['compile_s']} | {r['max_abs_diff']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``normbench bench lstm``."""
    parser = options.bench_parser("lstm", __doc__.split("\n\n")[0])
    options.add_device(parser)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=28, help="time steps (default 28: rows)")
    parser.add_argument("--features", type=int, default=28, help="values per step (default 28)")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--layers", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--norms",
        default="",
        help="comma-separated extra cases of our cell with a norm, as norm or norm:placement "
        "(e.g. batch:per_step,layer); default none",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time torch.compile (default: on)",
    )
    options.add_repeats(parser, 9, help="timed repeats per case (median; default 9)")
    options.add_warmup(parser, 2, help="untimed calls per case first (default 2)")
    options.add_threads(parser)
    options.add_output(parser)
    args = parser.parse_args(argv)
    if args.readme_only:
        rewrite_section(args.out, SECTION, readme_section(args.out))
        return 0
    (device,) = options.devices(parser, args.device)
    options.apply_threads(args.threads)
    if args.compile:
        raise_compile_cache_limit()
    env = {**environment(device), "load_start": load_average()}
    command = options.command_line("lstm", argv)
    shape = (1, args.steps, args.features)
    torch.manual_seed(0)
    ours = Unrolled(cell("none", args.hidden, args.layers, shape)).to(device).train()
    models: dict[str, nn.Module] = {REFERENCE: TorchLSTM(ours).to(device).train(), "ours": ours}
    for norm in filter(None, (n.strip() for n in args.norms.split(","))):
        models[f"ours, norm={norm}"] = Unrolled(cell(norm, args.hidden, args.layers, shape))
        models[f"ours, norm={norm}"].to(device).train()
    seq = torch.randn(args.steps, args.batch, args.features, device=device, requires_grad=True)
    dy = torch.randn(args.steps, args.batch, args.hidden, device=device)
    with torch.no_grad():
        diff = (models["ours"](seq) - models[REFERENCE](seq)).abs().max().item()
    cases = {}
    for name, module in models.items():
        for compiled in (False, True) if args.compile else (False,):
            cases[(name, compiled)] = step_fn(module, seq, dy, compiled)
    print(
        f"bench lstm on {device.type} ({env['device_name']}, torch {env['torch']}, "
        f"{env['threads']} threads, load {env['load_start']}): {len(cases)} cases",
        flush=True,
    )
    ms, first = time_cases(cases, device, args.repeats, args.warmup)
    env["load_end"] = load_average()
    base = ms[(REFERENCE, False)]
    rows = []
    for (name, compiled), value in ms.items():
        ratio = value / base
        rows.append(
            {
                **env,
                "case": name,
                "compiled": compiled,
                "batch": args.batch,
                "steps": args.steps,
                "features": args.features,
                "hidden": args.hidden,
                "layers": args.layers,
                "repeats": args.repeats,
                "ms": f"{value:.2f}",
                "ratio": f"{ratio:.2f}",
                "within_target": ratio <= TARGET if name == "ours" else "",
                "compile_s": f"{first[(name, compiled)]:.1f}" if compiled else "",
                "max_abs_diff": f"{diff:.1e}" if name == "ours" else "",
                "conditions": args.conditions,
                "command": command,
            }
        )
        print(f"{name:>28} {'compiled' if compiled else 'eager':>8} {value:8.2f} ms  {ratio:5.2f}x")
    suffix = f"-{env['threads']}t" if device.type == "cpu" else ""
    write_rows(args.out, f"lstm-{device.type}{suffix}.csv", COLUMNS, rows)
    update_section(args.out / "README.md", SECTION, readme_section(args.out))
    return 0
