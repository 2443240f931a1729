"""A study's training grid: layers of overrides, a later axis replacing an earlier one, and the
runs that answer its jobs found by the overrides they record (never their directory names)."""

from __future__ import annotations

import pytest
import yaml

from normbench.cli.values import split_values
from normbench.errors import ConfigError
from normbench.studies.grid import identity, make_grid, match_runs


def test_commas_inside_brackets_do_not_split():
    assert split_values("a,b,[1,2],{x: 1, y: 2},f(1,2)") == [
        "a",
        "b",
        "[1,2]",
        "{x: 1, y: 2}",
        "f(1,2)",
    ]
    assert split_values("0.1") == ["0.1"]


def test_later_layers_replace_earlier_axes_and_fixed_values():
    grid = make_grid(
        [
            ["experiment=small_batch"],
            ["seed=0,1", "per_device.images=32,16,8"],
            ["seed=0,1,2", "trainer.steps=100"],
            ["per_device.images=2"],
        ]
    )
    assert dict(grid.axes) == {"seed": ("0", "1", "2")}
    assert set(grid.fixed) == {"experiment=small_batch", "trainer.steps=100", "per_device.images=2"}
    jobs = grid.jobs()
    assert len(jobs) == 3 and {j["seed"] for j in jobs} == {"0", "1", "2"}
    assert all(j["per_device.images"] == "2" for j in jobs)


def test_an_override_without_a_value_is_one_clear_error():
    with pytest.raises(ConfigError, match="is not a key=value override"):
        make_grid([["seed"]])


def test_runs_are_matched_by_their_recorded_overrides(tmp_path):
    grid = make_grid([["experiment=x", "norm=none,batch", "seed=0"]])
    # a directory whose name says "group" but whose recorded overrides are norm=batch's job
    run = tmp_path / "runs" / "x" / "norm=group"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"name": "x", "norm": {"name": "batch"}})
    )
    recorded = ["experiment=x", "norm=batch", "seed=0", "trainer.threads=1", "name=x"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(recorded))
    matched = match_runs(grid, tmp_path / "runs" / "x")
    found = {job["norm"]: run_ for job, run_ in matched}
    assert found["none"] is None and found["batch"] is not None and found["batch"].path == run
    # keys that do not change what a run computes are left out of a job's identity
    assert identity({"seed": "0", "trainer.threads": "2"}) == identity({"seed": "0"})


def test_a_float_written_another_way_is_the_same_job():
    """Hydra records a swept float as Python writes it (1e30 → 1e+30): the job still finds
    its run, and values that are no float are left alone."""
    from normbench.studies.grid import canonical, identity

    assert identity({"optim.lr": "1e30", "seed": "0"}) == identity(
        {"optim.lr": "1e+30", "seed": "0"}
    )
    assert identity({"optim.lr": "1e-3"}) == identity({"optim.lr": "0.001"})
    assert identity({"optim.lr": "0.1"}) != identity({"optim.lr": "0.01"})
    assert [canonical(v) for v in ("fashion_mnist", "[0.5,1]", "10", "cp_weight")] == [
        "fashion_mnist",
        "[0.5,1]",
        "10",
        "cp_weight",
    ]
