"""``trainer.keep_every=K`` keeps the model of every K-th step; ``normbench eval RUN step=S``
evaluates a kept model (its row carries step S beside the last checkpoint's rows), and a step
that was not kept is one clear error naming those that were."""

from __future__ import annotations

import csv

import torch

from normbench.engine.checkpoint import kept_steps

COMMON = [
    "dataset=fashion_mnist",
    "dataset.download=false",
    "dataset.batch_size=20",
    "model.hidden=[16,16]",
    "trainer.steps=6",
    "trainer.eval_every=3",
    "trainer.keep_every=2",
    "probes.every=0",
    "logging.tensorboard=false",
]


def rows(run) -> list[dict[str, str]]:
    with open(run / "evals.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_kept_models_are_the_models_of_their_steps_and_eval_reads_them(
    run_cli, data_root, tmp_path
):
    args = [*COMMON, f"dataset.root={data_root}"]
    code, out, err = run_cli("train", *args, "hydra.run.dir=stopped", "trainer.stop_after=4")
    assert code == 0, out + err
    code, out, err = run_cli("train", *args, "hydra.run.dir=run")
    assert code == 0, out + err
    run, stopped = tmp_path / "run", tmp_path / "stopped"
    assert kept_steps(run) == [2, 4, 6] and kept_steps(stopped) == [2, 4]
    kept = torch.load(run / "ckpt" / "step_00000004.pt", weights_only=True)
    at4 = torch.load(stopped / "ckpt" / "last.pt", weights_only=True)  # stopped after step 4
    assert kept["step"] == 4 and "optimizer" not in kept
    assert all(torch.equal(kept["model"][k], at4["model"][k]) for k in at4["model"])

    for step in ("step=4", "step=2", "step=4"):  # the same evaluation again replaces its row
        code, out, err = run_cli("eval", "run", "mode=running", step)
        assert code == 0, out + err
    code, out, err = run_cli("eval", "run", "mode=running")
    assert code == 0, out + err
    code, out, err = run_cli("eval", "stopped", "mode=running")  # its last checkpoint: step 4
    assert code == 0, out + err
    got = {r["step"]: r for r in rows(run)}
    assert sorted(got) == ["2", "4", "6"] and len(rows(run)) == 3
    assert got["4"]["error"] == rows(stopped)[0]["error"]  # the kept model is step 4's model
    assert got["4"]["requests"] == "mode=running step=4"
    assert got["2"]["error"] != got["6"]["error"]

    code, out, err = run_cli("eval", "run", "mode=running", "step=2", "done=skip")
    assert code == 0 and "skipped" in err, out + err
    code, out, err = run_cli("eval", "run", "mode=running", "step=3")
    assert code == 2
    assert "has no model kept at step=3; it kept steps 2, 4, 6." in err
    code, out, err = run_cli("eval", "run", "mode=running", "step=x")
    assert code == 2 and "step=x is not valid" in err
