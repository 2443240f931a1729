"""``normbench eval ... kl=true``: per-layer KL between source and target responses (AdaBN's
table), checked against float64 formulas written here and on tiny trained runs."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from normbench.cli import command as cli
from normbench.data.idx import read_idx
from normbench.evaluation.kl import (
    COLUMNS,
    VAR_FLOOR,
    ChannelMoments,
    gaussian_kl,
    layer_divergence,
)
from normbench.evaluation.records import KEY

from .conftest import write_idx
from .test_eval_cli import TRAIN, copy_run, make_hard_idx

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def kl_reference(m1: float, v1: float, m2: float, v2: float) -> float:
    """KL(N(m1, v1) ‖ N(m2, v2)) from the definition's closed form, in Python floats."""
    return math.log(math.sqrt(v2) / math.sqrt(v1)) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5


def test_the_closed_form_matches_the_float64_formula_on_known_gaussians():
    cases = [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 1.0, 1.0), (1.5, 0.25, -0.5, 4.0), (3, 9, 3, 1)]
    rng = np.random.default_rng(1)
    cases += [
        (rng.normal(), rng.uniform(0.01, 5), rng.normal(), rng.uniform(0.01, 5)) for _ in range(50)
    ]
    got = gaussian_kl(*(torch.tensor([c[i] for c in cases], dtype=D) for i in range(4)))
    want = torch.tensor([kl_reference(*c) for c in cases], dtype=D)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert got[0] == 0 and got[1] == pytest.approx(0.5)  # equal: 0; a unit shift: 1/2
    swapped = gaussian_kl(*(torch.tensor([c[i] for c in cases], dtype=D) for i in (2, 3, 0, 1)))
    assert not torch.allclose(got[2:], swapped[2:])  # KL is not symmetric


def test_channel_moments_are_the_gaussian_fit_whatever_the_batching():
    x = torch.randn(37, 5, 3, 4, dtype=D) * torch.arange(1, 6, dtype=D).view(1, 5, 1, 1) + 7
    for sizes in ([37], [1, 36], [10, 10, 10, 7]):
        moments = ChannelMoments()
        for part in x.split_with_sizes(sizes):
            moments.add(part.float() if len(sizes) == 3 else part)
        values = x.transpose(0, 1).reshape(5, -1)
        mean = values.sum(1) / values.shape[1]
        var = ((values - mean[:, None]) ** 2).sum(1) / values.shape[1]  # biased: the ML fit
        tol = 1e-6 if len(sizes) == 3 else 1e-12  # float32 batches are widened, not rounded
        assert moments.count == 37 * 12
        torch.testing.assert_close(moments.mean, mean, rtol=tol, atol=tol)
        torch.testing.assert_close(moments.var, var, rtol=tol, atol=tol)


def test_one_shared_affine_normalization_leaves_the_kl_unchanged():
    """Why each domain is measured under statistics of its own (see normbench.evaluation.kl):
    normalizing both domains by the same statistics cannot change the Gaussian KL."""
    source, target = torch.randn(400, 3, dtype=D), torch.randn(400, 3, dtype=D) * 0.5 + 0.3
    mean, std, gamma, beta = source.mean(0), source.std(0), torch.rand(3, dtype=D) + 0.5, 1.0
    moments = []
    for data in (source, target, (source - mean) / std * gamma + beta):
        m = ChannelMoments()
        m.add(data)
        moments.append(m)
    shared = ChannelMoments()
    shared.add((target - mean) / std * gamma + beta)
    raw = layer_divergence("l", "L", moments[0], moments[1])
    normalized = layer_divergence("l", "L", moments[2], shared)
    assert normalized.kl_mean == pytest.approx(raw.kl_mean, rel=1e-10)
    assert raw.kl_mean > 0.1


def test_constant_channels_are_left_out():
    source, target = ChannelMoments(), ChannelMoments()
    x = torch.randn(50, 3, dtype=D)
    x[:, 1] = 2.0  # a channel whose scale is 0
    source.add(x)
    target.add(x * 2)
    kl = layer_divergence("l", "L", source, target)
    assert kl.channels == 2 and source.var[1] <= VAR_FLOOR
    assert kl.kl_mean == pytest.approx(kl_reference(0, 1, 0, 4), rel=0.02)


# -- on tiny trained runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A BN run and a GN run of 60 steps, and a copy of their validation data shifted to
    x·0.5 + 0.3 (a domain of its own), written as an MNIST-format dataset."""
    base = tmp_path_factory.mktemp("kl_runs")
    root = base / "data"
    make_hard_idx(root / "fashion_mnist")
    shifted = base / "shifted" / "mnist"
    shifted.mkdir(parents=True)
    for split in ("train", "t10k"):
        images = read_idx(root / "fashion_mnist" / f"{split}-images-idx3-ubyte")
        labels = read_idx(root / "fashion_mnist" / f"{split}-labels-idx1-ubyte")
        moved = np.rint(images.astype(np.float64) * 0.5 + 0.3 * 255).astype(np.uint8)
        write_idx(shifted / f"{split}-images-idx3-ubyte", moved, compress=False)
        write_idx(shifted / f"{split}-labels-idx1-ubyte", labels, compress=False)
    runs = {"bn": ["norm=batch"], "gn": ["norm=group", "norm.num_groups=4"]}
    cwd, argv = Path.cwd(), sys.argv
    try:
        os.chdir(base)
        sys.argv = ["normbench"]
        for name, extra in runs.items():
            args = ["train", *TRAIN, f"dataset.root={root}", *extra, f"hydra.run.dir={name}"]
            assert cli.main(args) == 0, name
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return {**{name: base / name for name in runs}, "shifted": shifted.parent}


def kl_rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "kl.csv", keep_default_na=False, na_values=[""])


def by_layer(table: pd.DataFrame, mode: str, data: str) -> pd.Series:
    rows = table[(table["mode"] == mode) & (table["data"] == data)]
    return rows.set_index("layer")["kl_mean"]


def test_adaptation_lowers_the_kl_of_every_bn_layer(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    shift = ["data=mnist", f"data.root={trained['shifted']}", "kl=true"]
    code, out, err = run_cli("eval", str(run), "-m", "mode=running,adapt", *shift)
    assert code == 0, out + err
    assert run_cli("eval", str(run), "mode=running", "kl=true")[0] == 0  # clean validation data
    table = kl_rows(run)
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(table) == 9 and set(table["layer_type"]) == {"BatchNorm"}
    assert (table["channels"] == 32).all() and (table["target_samples"] == 240).all()
    assert (table["source_samples"] == 480).all()  # 2,000 asked, the training split holds 480
    running = by_layer(table, "running", "mnist")
    adapt = by_layer(table, "adapt", "mnist")
    clean = by_layer(table, "running", "fashion_mnist")
    assert list(running.index) == ["hidden.0.norm", "hidden.1.norm", "hidden.2.norm"]
    # AdaBN: with each domain normalized by statistics of its own, the responses of the two
    # domains line up; with the source statistics they do not.
    assert (running > 0.05).all(), running
    assert (adapt < running / 10).all(), (running, adapt)
    assert (clean < running / 5).all(), (clean, running)  # the shift, not sampling, made it
    assert run_cli("eval", str(run), "-m", "mode=running,adapt", *shift)[0] == 0  # again
    again = kl_rows(run)
    assert len(again) == 9 and not again.duplicated([*KEY, "layer"]).any()
    torch.testing.assert_close(
        torch.tensor(by_layer(again, "running", "mnist").values), torch.tensor(running.values)
    )
    assert len(pd.read_csv(run / "evals.csv")) == 3  # kl=true adds no evaluation row


def test_batch_statistics_modes_and_reruns_keep_one_row_per_key_and_layer(
    run_cli, trained, tmp_path
):
    run = copy_run(trained["bn"], tmp_path)
    sweep = ["-m", "mode=batch,partial,tent", "batch_size=8,16", "kl=100"]
    code, out, err = run_cli("eval", str(run), *sweep)
    assert code == 0, out + err
    assert "kl " in out and "over 3 layers" in out
    table = kl_rows(run)
    assert len(table) == 6 * 3 and not table.duplicated([*KEY, "layer"]).any()
    assert (table["source_samples"] == 96).all()  # whole batches of 8 and 16 out of 100
    assert table["kl_mean"].notna().all() and (table["kl_mean"] >= 0).all()
    assert run_cli("eval", str(run), "mode=batch", "batch_size=8", "kl=100")[0] == 0
    assert len(kl_rows(run)) == 18
    # an evaluation whose batch statistics are undefined has no KL rows
    assert run_cli("eval", str(run), "mode=batch", "batch_size=1", "kl=true")[0] == 0
    assert len(kl_rows(run)) == 18


def test_a_model_without_batch_statistics_is_measured_at_its_norm_slots(run_cli, trained, tmp_path):
    run = copy_run(trained["gn"], tmp_path)
    shift = ["data=mnist", f"data.root={trained['shifted']}", "kl=300"]
    code, out, err = run_cli("eval", str(run), "-m", "mode=running,adapt", *shift)
    assert code == 0, out + err
    table = kl_rows(run)
    assert len(table) == 6 and set(table["layer_type"]) == {"GroupNorm"}
    assert (table["source_samples"] == 300).all() and (table["target_samples"] == 240).all()
    running, adapt = by_layer(table, "running", "mnist"), by_layer(table, "adapt", "mnist")
    assert (running > 0).all()
    # adapt does not apply (no batch statistics): the same measurement as running
    assert adapt.tolist() == running.tolist()


def test_a_bad_kl_value_is_one_line(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    code, out, err = run_cli("eval", str(run), "kl=maybe")
    assert code == 2 and "kl=maybe is not valid" in err and len(err.strip().splitlines()) == 1
    assert not (run / "kl.csv").exists()
