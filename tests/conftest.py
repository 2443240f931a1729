"""Shared fixtures. Tests are CPU-only and offline: no download, ever."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from normbench.cli import command as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (small tensors; no thread-pool stalls on a shared CPU).
    Numerical test modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """Write ``array`` in the IDX format, written out here from the format's definition."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_dataset(
    folder: Path, n_train: int = 240, n_val: int = 120, compress: bool = True
) -> dict:
    """Four tiny MNIST-format files whose labels are learnable (class = brightest image quarter)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_val)):
        labels = rng.integers(0, 4, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 2)
            images[i, 14 * r : 14 * r + 14, 14 * q : 14 * q + 14] += 150
        write_idx(folder / f"{split}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels, compress)
        out[split] = (images, labels)
    return out


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A data root holding generated Fashion-MNIST and MNIST files."""
    root = tmp_path / "data"
    make_idx_dataset(root / "fashion_mnist")
    return root


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Call ``normbench ...`` in-process from ``tmp_path``; return (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["normbench"])

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # Hydra and argparse exit this way
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def study_cli(
    cwd: Path, module: str, *args: str, wait: bool = True, timeout: float = 900, **kw
) -> subprocess.CompletedProcess | subprocess.Popen:
    """``normbench study ARGS`` in a fresh interpreter that first imports ``module`` (the test
    file that registers its tiny studies), run in ``cwd``. ``wait=False`` returns the running
    process (its own session, output on stdout) for tests that signal it."""
    code = (
        f"import sys; import {module}; from normbench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", code, "study", *args]
    if wait:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw
        )
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def tiny_run(
    steps: int = 4, every: int = 2, data: str = "data", eval_batch: int = 64
) -> tuple[str, ...]:
    """The overrides of a tiny study's runs: the generated data under ``data``, a holdout of 64,
    ``steps`` steps evaluated and logged every ``every``, one checkpoint at the end."""
    return (
        f"dataset.root={data}",
        "dataset.holdout_size=64",
        f"trainer.steps={steps}",
        f"trainer.eval_every={every}",
        f"trainer.log_every={every}",
        f"trainer.ckpt_every={steps}",
        f"trainer.eval_batch_size={eval_batch}",
    )
