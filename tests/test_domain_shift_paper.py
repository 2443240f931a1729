"""docs/papers.md holds the papers' numbers; normbench/studies/domain_shift/paper.py must say the
same (the report prints them beside ours)."""

from __future__ import annotations

import pytest

from normbench.data.corruptions.names import CORRUPTIONS
from normbench.studies.domain_shift import paper
from tests.test_report_papers import DOC, number, numbers_in, table


def test_tents_table_is_the_documented_one():
    header, *rows = table("tent_cifar10c")
    assert header[2:] == list(CORRUPTIONS)
    doc = {row[0]: dict(zip(header[1:], map(number, row[1:]), strict=True)) for row in rows}
    for method, values in doc.items():
        assert {c: values[c] for c in CORRUPTIONS} == paper.TENT_TABLE[method]
        assert values["mean"] == paper.TENT_MEAN[method]
        # the README's mean is the mean of its 15 corruptions (to its one decimal)
        assert sum(paper.TENT_TABLE[method].values()) / 15 == pytest.approx(
            values["mean"], abs=0.05
        )


def test_schneiders_numbers_are_the_documented_ones():
    header, row = table("schneider_resnet50")
    doc = dict(zip(header[1:], map(number, row[1:]), strict=True))
    assert (doc["no adaptation"], doc["partial"], doc["full"]) == tuple(
        paper.SCHNEIDER_MCE[k] for k in ("running", "partial", "adapt")
    )
    header, *rows = table("schneider_norms")
    resnet50 = dict(zip(header, rows[0], strict=True))
    assert resnet50["depth"] == "ResNet-50"
    assert number(resnet50["GroupNorm"]) == paper.SCHNEIDER_MCE["group"]
    assert number(resnet50["BatchNorm"]) == paper.SCHNEIDER_MCE["running"]
    assert number(resnet50["BN + adaptation"]) == paper.SCHNEIDER_MCE["adapt"]


def test_the_pattern_and_the_tent_setting_are_the_documented_ones():
    high, low = paper.tent_pattern()
    assert (round(high, 1), round(low, 2), round(high - low, 1)) == (32.0, 1.95, 30.1)
    documented = numbers_in(DOC.read_text(encoding="utf-8"))
    for value in (f"{high:.1f}", f"{low:.2f}", f"{high - low:.1f}"):
        assert value in documented
    assert {str(paper.TENT_BATCH), str(paper.TENT_UPDATES)} <= documented
    assert set(paper.NOISE_AND_BLUR) | set(paper.BRIGHTNESS_AND_JPEG) <= set(CORRUPTIONS)
    noise_and_blur = [c for c in CORRUPTIONS if c.endswith(("_noise", "_blur"))]
    assert list(paper.NOISE_AND_BLUR) == noise_and_blur and len(noise_and_blur) == 7
