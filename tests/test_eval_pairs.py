"""Dataset pairs of the domain-shift study, on generated files in the datasets' own formats:
a run trained on one dataset is evaluated on another through `normbench eval data=...`
(MNIST -> USPS: 28x28 -> 16x16 grey; SVHN -> MNIST: 32x32 RGB -> 28x28 grey)."""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from tests.conftest import write_idx

TINY = [
    "model=mlp_sigmoid",
    "model.hidden=[16]",
    "dataset.batch_size=10",
    "trainer.steps=6",
    "trainer.eval_every=6",
    "probes.every=0",
    "trainer.threads=1",
]


def write_mnist(root: Path, n: int = 40) -> None:
    """MNIST IDX files with every one of the 10 labels."""
    rng = np.random.default_rng(0)
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for split in ("train", "t10k"):
        write_idx(
            folder / f"{split}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
            True,
        )
        write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), True)


def write_usps(root: Path, n: int = 30) -> None:
    """USPS bz2 LIBSVM files (labels 1..10 for digits 0..9) with every label."""
    rng = np.random.default_rng(1)
    folder = root / "usps"
    folder.mkdir(parents=True)
    for name in ("usps.bz2", "usps.t.bz2"):
        lines = [
            f"{i % 10 + 1} "
            + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(rng.uniform(-1, 1, 256)))
            for i in range(n)
        ]
        (folder / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))


def write_svhn(root: Path, n: int = 40) -> None:
    """SVHN .mat files (label 10 is the digit 0) with every label."""
    rng = np.random.default_rng(2)
    folder = root / "svhn"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})


def _train(run_cli, dataset: str, root: Path, run: str) -> Path:
    code, out, err = run_cli(
        "train", f"dataset={dataset}", f"dataset.root={root}", *TINY, f"hydra.run.dir={run}"
    )
    assert code == 0, out + err
    return Path(run)


def _row(run: Path, data: str, mode: str = "running") -> pd.Series:
    evals = pd.read_csv(run / "evals.csv")
    rows = evals[(evals["data"] == data) & (evals["mode"] == mode)]
    assert len(rows) == 1, evals
    return rows.iloc[0]


def test_mnist_to_usps(run_cli, tmp_path):
    root = tmp_path / "data"
    write_mnist(root)
    write_usps(root)
    run = _train(run_cli, "mnist", root, "mnist_run")
    code, out, err = run_cli(
        "eval", str(run), "-m", "mode=running,adapt", "data=usps", f"data.root={root}"
    )
    assert code == 0, out + err
    for mode in ("running", "adapt"):
        row = _row(run, "usps", mode)
        assert row["status"] == "ok" and 0.0 <= row["error"] <= 1.0


def test_svhn_to_mnist(run_cli, tmp_path):
    root = tmp_path / "data"
    write_svhn(root)
    write_mnist(root)
    run = _train(run_cli, "svhn", root, "svhn_run")
    code, out, err = run_cli("eval", str(run), "data=mnist", f"data.root={root}")
    assert code == 0, out + err
    assert _row(run, "mnist")["status"] == "ok"


def test_a_missing_target_dataset_is_one_line(run_cli, tmp_path):
    root = tmp_path / "data"
    write_mnist(root)
    run = _train(run_cli, "mnist", root, "mnist_run")
    code, out, err = run_cli("eval", str(run), "data=usps", f"data.root={root}")
    assert code == 2 and "usps" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err


def test_office31_amazon_to_webcam(run_cli, tmp_path):
    """An ImageFolder domain pair: trained on amazon, evaluated on webcam (its own validation
    domain) and on dslr (another domain chosen at evaluation)."""
    from tests.test_data_folder import make_folder

    root = tmp_path / "data"
    for domain, n in (("amazon", 4), ("webcam", 2), ("dslr", 2)):
        make_folder(root / "office31" / domain / "images", per_class=n, ext="jpg")
    folder = [
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.path=office31",
        "dataset.domain=amazon",
        "dataset.val_domain=webcam",
        "dataset.size=16",
        "dataset.num_workers=0",
        "dataset.batch_size=6",
        "probes.batch_size=4",
    ]
    code, out, err = run_cli("train", *folder, *TINY, "hydra.run.dir=office")
    assert code == 0, out + err
    code, out, err = run_cli("eval", "office", "-m", "mode=running,adapt", "data.val_domain=dslr")
    assert code == 0, out + err
    evals = pd.read_csv(Path("office") / "evals.csv")
    assert set(evals["mode"]) == {"running", "adapt"} and (evals["status"] == "ok").all()
    assert evals["data"].str.contains("dslr").all(), evals["data"]


def test_a_corrupted_evaluation_differs_from_the_clean_one_and_is_repeatable(run_cli, tmp_path):
    """corruption=<name> severity=<s> corrupts the run's own validation images (in [0, 1],
    before its standardization); the same evaluation again gives the same numbers."""
    root = tmp_path / "data"
    write_mnist(root)
    run = _train(run_cli, "mnist", root, "mnist_run")
    grid = ["-m", "corruption=none,gaussian_noise,contrast", f"data.root={root}"]
    code, out, err = run_cli("eval", str(run), *grid[:2], f"data.root={root}")
    assert code != 0 and "needs severity=1..5" in out + err  # a corruption needs a severity
    code, out, err = run_cli(
        "eval",
        str(run),
        "-m",
        "corruption=gaussian_noise,contrast",
        "severity=5",
        f"data.root={root}",
    )
    assert code == 0, out + err
    code, out, err = run_cli("eval", str(run), f"data.root={root}")
    assert code == 0, out + err
    evals = pd.read_csv(run / "evals.csv").set_index("corruption")
    assert set(evals.index) == {"none", "gaussian_noise", "contrast"}
    assert evals.loc["gaussian_noise", "nll"] != evals.loc["none", "nll"]
    assert evals.loc["contrast", "nll"] != evals.loc["none", "nll"]
    first = evals.loc["gaussian_noise", "nll"]
    code, out, err = run_cli(
        "eval", str(run), "corruption=gaussian_noise", "severity=5", f"data.root={root}"
    )
    assert (
        code == 0
        and pd.read_csv(run / "evals.csv").set_index("corruption").loc["gaussian_noise", "nll"]
        == first
    )


def test_done_skip_leaves_out_what_evals_csv_already_answers(run_cli, tmp_path):
    root = tmp_path / "data"
    write_mnist(root)
    run = _train(run_cli, "mnist", root, "mnist_run")
    grid = ["-m", "mode=running,adapt", "corruption=contrast", "severity=1,2", f"data.root={root}"]
    code, out, err = run_cli("eval", str(run), *grid, "done=skip")
    assert code == 0 and "4 ok" in err, out + err
    before = pd.read_csv(run / "evals.csv")
    code, out, err = run_cli(
        "eval", str(run), *[g.replace("severity=1,2", "severity=2,3") for g in grid], "done=skip"
    )
    assert code == 0 and "2 skipped" in err and "2 ok" in err, err  # only severity 3 is new
    code, out, err = run_cli("eval", str(run), *grid, "done=skip")
    assert code == 0 and "4 skipped" in err and "0 failed" in err, out + err
    after = pd.read_csv(run / "evals.csv")
    kept = after[after["severity"].isin([1, 2])].reset_index(drop=True)
    assert len(after) == 6
    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True))  # rows untouched
    with_kl = ["-m", "kl=200", "mode=running", "corruption=contrast", "severity=1"]
    code, out, err = run_cli("eval", str(run), *with_kl, f"data.root={root}", "done=skip")
    assert code == 0 and "1 ok" in err, err  # with kl it is another request: evaluated
    assert len(pd.read_csv(run / "evals.csv")) == len(after)  # the same row, two requests
    code, out, err = run_cli("eval", str(run), *with_kl, f"data.root={root}", "done=skip")
    assert "1 skipped" in err, err
    code, out, err = run_cli(
        "eval",
        str(run),
        "mode=running",
        "corruption=contrast",
        "severity=1",
        f"data.root={root}",
        "done=skip",
    )
    assert code == 0 and "skipped" in out + err  # the row still answers its first request
