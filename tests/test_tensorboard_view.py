"""What a researcher sees in TensorBoard, read back through TensorBoard's own readers (its
event multiplexer and the HParams plugin's /experiment and /session_groups routes): run names
are the run directories, the sweep's axes are among the hyper-parameters the HPARAMS tab shows
first, its metric columns hold the final values, and activation tags name each layer once."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_train_cli import FAST

SHOWN_FIRST = 5  # TensorBoard 2.x's HPARAMS tab checks the first five hyper-parameters


def _hparams_route(logdir: Path, route: str, request: dict) -> dict:
    """POST ``request`` to the HParams plugin's ``route`` as TensorBoard serves it for
    ``--logdir logdir``; the JSON answer."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.context import RequestContext
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    app = hparams_plugin.HParamsPlugin(context).get_plugin_apps()[route]

    def with_context(environ, start_response):
        environ["tensorboard.request_context"] = RequestContext()
        environ["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
        return app(environ, start_response)

    answer = Client(with_context).post(
        "/", data=json.dumps(request), content_type="application/json"
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return json.loads(answer.get_data(as_text=True))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of bn_fig1 over norm (2 runs), as `normbench train -m` writes it under runs/."""
    import os
    import subprocess
    import sys

    cwd = tmp_path_factory.mktemp("tb_view")
    argv = ["-m", "experiment=bn_fig1", "norm=none,batch", "seed=0", *FAST]
    code = "import sys; from normbench.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, "train", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return cwd / "runs"


def test_run_names_are_the_run_directories(sweep):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(sweep))
    mux.Reload()
    run_dirs = [p.parent for p in sweep.rglob("summary.json")]
    assert len(run_dirs) == 2
    assert set(mux.Runs()) == {p.relative_to(sweep).as_posix() for p in run_dirs}
    assert all(run.startswith("bn_fig1/") and "/tb" not in run for run in mux.Runs())
    (batch,) = [run for run in mux.Runs() if ",norm=batch," in run]
    scalars = set(mux.PluginRunToTagToContent("scalars")[batch])
    assert {"act/hidden.2/unit_p50", "val/error", "hparam/val_error"} <= scalars
    assert not [t for t in scalars if t.startswith("act/") and ".act/" in t]
    assert not any((run / "tb").exists() for run in run_dirs)


def test_the_hparams_tab_shows_the_sweep_and_the_final_metrics(sweep):
    experiment = _hparams_route(sweep, "/experiment", {"experimentName": ""})
    names = sorted(h["name"] for h in experiment["hparamInfos"])
    assert {"norm", "seed"} <= set(names[:SHOWN_FIRST]), names
    assert not {"amp", "channels_last", "compile", "batch_size"} & set(names), names
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert metrics == {"hparam/val_error", "hparam/train_loss", "hparam/images_per_s"}
    groups = _hparams_route(
        sweep,
        "/session_groups",
        {
            "experimentName": "",
            "startIndex": 0,
            "sliceSize": 10,
            "allowedStatuses": [
                "STATUS_UNKNOWN",
                "STATUS_SUCCESS",
                "STATUS_FAILURE",
                "STATUS_RUNNING",
            ],
        },
    )
    assert len(groups["sessionGroups"]) == 2
    for group in groups["sessionGroups"]:
        run = sweep / group["name"]
        assert f",norm={group['hparams']['norm']}," in run.name
        final = pd.read_csv(run / "metrics.csv").iloc[-1]
        summary = json.loads((run / "summary.json").read_text())
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["hparam/val_error"] == pytest.approx(final["val_error"], rel=1e-6)
        assert values["hparam/train_loss"] == pytest.approx(final["train_loss"], rel=1e-6)
        assert values["hparam/images_per_s"] == pytest.approx(summary["images_per_s"], rel=1e-6)


def _events(run: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_fresh_start_removes_old_events_and_a_resume_keeps_them_once(tmp_path):
    """Event files (the run directory's own and a legacy tb/ folder's): a fresh start removes
    them; a resume from step 1 moves tb/'s up and keeps each (tag, step <= 1) once."""
    from normbench.recorder import Recorder

    def attempt(run: Path, resume: int | None, steps: range) -> None:
        rec = Recorder(run, resume_step=resume)
        for step in steps:
            rec.scalars(step, {"val/error": 0.5})
        rec.close()

    run = tmp_path / "run"
    attempt(run, None, range(3))
    attempt(run / "tb", None, range(3))  # how runs of earlier versions kept them
    (run / "tb" / "summary.json").unlink(missing_ok=True)
    attempt(run, 1, range(2, 4))
    assert not (run / "tb").exists()
    assert _events(run) == {"val/error": [0, 1, 2, 3]}
    attempt(run, None, range(1))
    assert _events(run) == {"val/error": [0]}
    assert len(list(run.glob("*tfevents*"))) == 1


def _trainer(run: Path, overrides: list[str], multirun: dict | None):
    """What hparams() reads of a trainer: its config and run directory (Hydra's files in it)."""
    from types import SimpleNamespace

    import yaml
    from omegaconf import OmegaConf

    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if multirun is not None:
        (run.parent / "multirun.yaml").write_text(yaml.safe_dump({"hydra": multirun}))
    cfg = OmegaConf.create(
        {
            "norm": {"name": "batch"},
            "seed": 1,
            "trainer": {"steps": 300, "amp": "bf16", "threads": 1},
            "optim": {"lr": 0.1},
        }
    )
    return SimpleNamespace(cfg=cfg, run_dir=run)


def test_hparams_are_the_command_lines_keys_and_the_sweeps_axes_when_more(tmp_path):
    from normbench.engine.run_summary import hparams

    make_run = _trainer(
        tmp_path / "a" / "norm=batch,seed=1",
        ["experiment=bn_fig1", "norm=batch", "seed=1", "dataset.root=/data", "trainer.threads=1"],
        {"sweeper": {"params": {"norm": "none,batch", "seed": "0,1,2"}}},
    )
    assert hparams(make_run) == {"norm": "batch", "seed": 1, "experiment": "bn_fig1"}
    one_run = _trainer(tmp_path / "b", ["trainer.steps=300", "trainer.amp=bf16"], None)
    assert hparams(one_run) == {
        "norm": "batch",
        "seed": 1,
        "trainer.steps": 300,
        "trainer.amp": "bf16",
    }
    many = [
        "experiment=bn_fig1",
        "norm=batch",
        "seed=1",
        "optim.lr=0.1",
        "trainer.steps=300",
        "trainer.amp=bf16",
        "+sweep=lr",
    ]
    swept = {"overrides": {"task": ["experiment=bn_fig1", "norm=none,batch", "optim.lr=0.1,0.5"]}}
    assert hparams(_trainer(tmp_path / "c" / "r", many, swept)) == {
        "norm": "batch",
        "seed": 1,
        "optim.lr": 0.1,
    }
