"""Safe loading, clean failures and signal handling of a run (see test_interrupt.py for exact
resumption under real signals)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import torch

from normbench.engine.checkpoint import load_checkpoint, save_checkpoint
from normbench.engine.signals import StopRequest
from tests.test_train_cli import FAST


class Payload:
    """Unpickling this makes the directory ``path``: visible proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _partial_run(run_cli) -> Path:
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.stop_after=5")
    assert code == 0, out + err
    return Path("r")


def test_a_crafted_checkpoint_is_refused_without_running_it(run_cli, tmp_path):
    run = _partial_run(run_cli)
    marker = tmp_path / "PWNED"
    torch.save({"step": 5, "x": Payload(marker)}, run / "ckpt" / "last.pt")
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r")
    assert code == 2 and "was refused" in out + err and "resume=never" in out + err, out + err
    assert not marker.exists() and "Traceback" not in out + err
    torch.load(run / "ckpt" / "last.pt", weights_only=False)  # the payload is real:
    assert marker.exists()


@pytest.mark.parametrize("size", [0, 100, 5000])
def test_an_empty_or_truncated_checkpoint_is_one_message(run_cli, size):
    run = _partial_run(run_cli)
    ckpt = run / "ckpt" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:size])
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r")
    assert code == 2 and str(ckpt) in out + err and "resume=never" in out + err, out + err
    assert "Traceback" not in out + err
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.resume=never")
    assert code == 0 and "r over from step 0" in out + err, out + err


def test_checkpoints_hold_only_plain_data_and_restore_every_generator(tmp_path):
    import random

    import numpy as np

    from normbench.engine.checkpoint import rng_state, set_rng_state

    state = {"step": 3, "rng": rng_state(), "w": torch.arange(4.0)}
    save_checkpoint(tmp_path / "c.pt", state)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    loaded = load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o666 & ~umask


def test_run_files_have_normal_permissions(run_cli, tmp_path):
    run = _partial_run(run_cli)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "ckpt/last.pt", "metrics.csv"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_full_disk_is_one_message_and_leaves_no_temporary_file(run_cli, monkeypatch):
    def full(obj, f, *args, **kwargs):
        f.write(b"x" * 4096)  # part of a checkpoint, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("normbench.engine.checkpoint.torch.save", full)
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.stop_after=5")
    assert code == 2 and "the disk is full" in out + err and "Traceback" not in out + err
    assert not list(Path("r").rglob("*.tmp"))
    assert json.loads(Path("r/summary.json").read_text())["status"] == "failed"


def test_an_unwritable_run_directory_is_one_message(run_cli, monkeypatch):
    import tempfile

    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "ckpt":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.stop_after=5")
    assert code == 2 and "is not writable" in out + err and "Traceback" not in out + err


def test_a_chance_level_run_is_flagged(run_cli):
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "optim.lr=1000", "norm=none")
    assert code == 0
    summary = json.loads(Path("r/summary.json").read_text())
    assert summary["status"] == "complete" and summary["at_chance"] is True
    assert "at chance level" in summary["warnings"][0] and "at chance level" in out + err


def test_a_learning_run_is_not_flagged(run_cli, data_root):
    args = ["dataset=fashion_mnist", f"dataset.root={data_root}", "trainer.steps=60"]
    code, out, err = run_cli("train", *args, "trainer.eval_every=60", "hydra.run.dir=ok")
    summary = json.loads(Path("ok/summary.json").read_text())
    assert code == 0 and summary["at_chance"] is False and summary["final"]["val_error"] < 0.5
    assert summary["warnings"] == []


def test_a_signal_is_a_request_and_a_second_ctrl_c_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.001)
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises before this ends
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_unwritable_or_full_location_is_refused_before_hydra_writes(run_cli, monkeypatch):
    """Hydra writes .hydra/ and train.log before normbench runs: a read-only or full location
    is refused first, with one line, and nothing is created."""
    import shutil
    from collections import namedtuple

    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode)
    )
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=ro/r")
    assert code == 2 and "is read-only or not writable" in err and not Path("ro").exists()
    monkeypatch.setattr(os, "access", real_access)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=full/r")
    assert code == 2 and "the disk is full (4,096 bytes free)" in err and not Path("full").exists()
    assert "Traceback" not in out + err


def test_a_disk_error_deep_in_a_library_is_one_message():
    from normbench.files import find_disk_error

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None
    except RuntimeError as err:
        message = find_disk_error(err, Path("runs/x"))
    assert message is not None and "the disk is full" in str(message)
    assert find_disk_error(RuntimeError("a bug"), Path("runs/x")) is None


def test_summary_is_strict_json_and_a_later_failure_keeps_a_complete_run(run_cli, monkeypatch):
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.eval_every=1000")
    assert code == 0
    text = Path("r/summary.json").read_text()

    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    summary = json.loads(text, parse_constant=refuse)
    assert summary["status"] == "complete"

    def broken(*args, **kwargs):
        raise OSError("the data file went bad")

    monkeypatch.setattr("normbench.engine.build.load_dataset", broken)
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "trainer.eval_every=1000")
    assert code != 0
    assert json.loads(Path("r/summary.json").read_text())["status"] == "complete"


def test_a_checkpoint_of_the_previous_format_still_resumes(tmp_path):
    """Before 2026-11-29 the numpy generator's state was saved as a numpy array: still loaded
    (array reconstruction only), and the generator restored."""
    import numpy as np

    from normbench.engine.checkpoint import set_rng_state

    np.random.seed(3)
    old = {"step": 7, "rng": {"numpy": np.random.get_state()}}
    torch.save(old, tmp_path / "old.pt")
    expected = np.random.rand()
    state = load_checkpoint(tmp_path / "old.pt", torch.device("cpu"))
    np.random.seed(4)
    n = state["rng"]["numpy"]
    assert isinstance(n, tuple) and n[0] == "MT19937"
    set_rng_state(
        {
            "python": __import__("random").getstate(),
            "numpy": n,
            "torch": torch.get_rng_state(),
            "cuda": [],
        }
    )
    assert np.random.rand() == expected
