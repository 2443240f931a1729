#!/usr/bin/env python
"""Where does BN's small-batch penalty come from? Re-evaluate trained runs three ways.

For each finished run directory (its ``ckpt/last.pt``), the validation error of the final
weights with the BN layers normalizing by:

- ``running``: the running averages made during training (what the run reported);
- ``precise``: population statistics recomputed over ``--images`` training images with the
  weights frozen (Precise BN, Wu & Johnson 2021; ``normbench.norms.stats.recompute_bn_stats``),
  each layer normalizing as in training (ghost groups of N included);
- ``batch``: each evaluated batch's own statistics, in the training batch size and groups of N
  (``use_batch_stats_at_eval``): test-time conditions equal to training ones.

If ``precise`` closes most of the gap between small and large N, the penalty is in the test-time
statistics; if it does not, the weights learned under noisy statistics are worse.

Usage:
    scripts/bn_stats_check.py RUN_DIR... [--images 10000] [--out results/x/bn_stats.csv]
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf, open_dict

from normbench.config import register_resolvers
from normbench.engine.checkpoint import load_checkpoint
from normbench.engine.environment import cpu_name, git_revision
from normbench.engine.evaluate import evaluate
from normbench.engine.train import Trainer
from normbench.norms.stats import bn_layers, recompute_bn_stats


def check_run(run_dir: Path, images: int) -> dict[str, object]:
    """The three val errors of one run (see the module docstring)."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    with open_dict(cfg):
        cfg.trainer.device, cfg.trainer.threads = "cpu", 1
    trainer = Trainer(cfg, run_dir)
    ckpt = run_dir / "ckpt" / "last.pt"
    if not ckpt.is_file():
        raise SystemExit(f"{run_dir}: no checkpoint ({ckpt}); finish the run first.")
    trainer.load_state_dict(load_checkpoint(ckpt, trainer.device))
    model, data, batch = trainer.model, trainer.data, int(trainer.cfg.dataset.batch_size)
    row: dict[str, object] = {
        "run": str(run_dir),
        "norm": cfg.norm.name,
        "images_per_device": trainer.per_device.images,
        "seed": cfg.seed,
        "step": trainer.step,
        "bn_layers": len(bn_layers(model)),
    }
    eval_batch = int(trainer.tcfg.eval_batch_size)
    row["running"] = evaluate(model, data.val_batches(eval_batch))["val_error"]
    row["batch"] = evaluate(model, data.val_batches(batch), batch_stats=True)["val_error"]
    loader = data.train_loader(batch, seed=12345)
    used = recompute_bn_stats(
        model, (loader.next() for _ in range(images // batch)), estimator="population"
    )
    row["precise"] = evaluate(model, data.val_batches(eval_batch))["val_error"]
    row["precise_images"] = used * batch
    row["evaluated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row["hardware"] = f"{cpu_name()} (cpu, 1 thread, torch {torch.__version__})"
    row["git"] = git_revision()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--images", type=int, default=10000, help="training images for precise")
    parser.add_argument("--out", type=Path, help="write the table as CSV here")
    args = parser.parse_args(argv)
    register_resolvers()
    torch.set_num_threads(1)
    rows = []
    for i, run in enumerate(args.runs, 1):
        print(f"[{i}/{len(args.runs)}] {run}", file=sys.stderr, flush=True)
        rows.append(check_run(run, args.images))
    table = pd.DataFrame(rows)
    print(table.drop(columns=["run", "evaluated", "hardware", "git"]).to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
