"""`normbench report` on runs of per_device.mode=ddp beside simulated devices: the comparison
report (not the small-batch one, which would average the two modes as if they were seeds)."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from tests.test_report_robust import make_run


def _as_mode(run, mode: str, processes: int, batch: int, steps: int, error: float) -> None:
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    cfg["per_device"].update(mode=mode, devices=2)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = json.loads((run / "summary.json").read_text())
    summary.update(
        steps=steps,
        final={"val_error": error},
        per_device={
            "images": cfg["per_device"]["images"],
            "mode": mode,
            "batch_size": batch,
            "devices": 2,
        },
        distributed={"world_size": processes, "backend": "gloo"},
    )
    (run / "summary.json").write_text(json.dumps(summary))


def test_ddp_runs_are_paired_with_simulated_devices(run_cli, tmp_path):
    root = tmp_path / "runs"
    for n, ddp_error, real_error in ((32, 0.30, 0.28), (16, 0.31, 0.35)):
        ddp = make_run(root / "a", "batch", 0, name="sb", images=n, final_error=ddp_error)
        _as_mode(ddp, "ddp", 2, 2 * n, 500, ddp_error)
        real = make_run(root / "b", "batch", 0, name="sb", images=n, final_error=real_error)
        _as_mode(real, "real", 1, 2 * n, 500, real_error)
    code, out, err = run_cli(
        "report", str(root / "a"), str(root / "b"), "--out", str(tmp_path / "r")
    )
    assert code == 0, out + err
    readme = (tmp_path / "r" / "README.md").read_text()
    assert readme.startswith("# Images per device: real processes (DDP) against simulated devices")
    pairs = pd.read_csv(tmp_path / "r" / "ddp_pairs.csv")
    assert sorted(pairs["N"]) == [16, 32] and set(pairs["against"]) == {"real"}
    by_n = pairs.set_index("N")["ddp − other, final %"]
    assert by_n[32] == 2.0 and by_n[16] == -4.0
    assert pairs["same batch and steps"].all()
    table = pd.read_csv(tmp_path / "r" / "ddp_compare.csv")
    assert set(zip(table["mode"], table["processes"], strict=True)) == {("ddp", 2), ("real", 1)}
