"""Device choice, seeding, and the provenance recorded in every summary.json."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normbench.errors import ConfigError


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but CUDA is not available; use trainer.device=auto or cpu."
        )
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, threads: int | None) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels; set CPU threads."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def git_revision() -> str:
    """The checkout's commit (with ``-dirty`` if code or configs are modified), or ``unknown``
    outside git. Changes under results/ do not count: they are what studies write, and a study
    run after another would otherwise record a dirty tree."""
    try:
        sha = _git("rev-parse", "--short=12", "HEAD", check=True)
        dirty = _git(
            "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"
        )
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git(*args: str, check: bool = False) -> str:
    """Output of ``git ARGS`` run in normbench's own directory."""
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=check
    )
    return done.stdout.strip()


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what a run ran."""
    return {
        "git": git_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        # 1-minute load average when the summary was written: other work on the machine slows
        # a run's wall time (None where the OS does not tell)
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
