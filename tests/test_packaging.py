"""The wheel ships the package and its config tree; `normbench train` finds configs from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_finds_every_subpackage_itself():
    """No list to keep up to date: setuptools finds each sub-package (configs through the link)."""
    from setuptools import find_packages

    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "normbench").rglob("__init__.py")
        if "configs" not in p.relative_to(ROOT / "normbench").parts
    }
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = setuptools["packages"]["find"]["include"]
    assert found | {"normbench.configs"} <= set(find_packages(str(ROOT), include=include))
    assert (ROOT / "normbench" / "configs" / "train.yaml").is_file()


def test_installed_wheel_finds_its_configs(tmp_path):
    pytest.importorskip("setuptools")
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    (wheel,) = wheels.glob("normbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"normbench/configs/{p.relative_to(ROOT / 'configs')}"
        for p in (ROOT / "configs").rglob("*.yaml")
    }
    assert configs <= names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import sys; from normbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, "train", "experiment=bn_fig1", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "steps: 50000" in out
    where = subprocess.run(
        [sys.executable, "-c", "import normbench.config as c; print(c.config_dir())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.strip().startswith(str(target))
