"""The config schemas in normbench/config.py hold types only: the keys they check are exactly the
keys the YAML files define, so neither can drift from the other."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import MISSING, OmegaConf

from normbench.config import SCHEMAS, config_dir


@pytest.mark.parametrize("section", ["trainer", "probes", "logging"])
def test_train_yaml_sections_match_their_schema(section):
    yaml_keys = set(OmegaConf.load(config_dir() / "train.yaml")[section])
    fields = SCHEMAS[section]
    assert yaml_keys == {f.name for f in dataclasses.fields(fields)}
    assert all(f.default is MISSING for f in dataclasses.fields(fields))  # defaults: YAML only


@pytest.mark.parametrize("name", sorted(p.stem for p in (config_dir() / "optim").glob("*.yaml")))
def test_optim_yaml_keys_are_in_the_schema(name):
    keys = set(OmegaConf.load(config_dir() / "optim" / f"{name}.yaml"))
    assert keys <= {f.name for f in dataclasses.fields(SCHEMAS["optim"])}
