"""One verdict rule for every study: paired differences over seeds, a 95% t interval, a minimum
effect tied to the measured noise, at least three seeds for "shown".

The rule (stated once; every study README quotes :data:`RULE`):

- A difference is paired by seed (or by trained model): ``d_i = b_i − a_i``. Its 95% confidence
  interval is ``mean ± t(0.975, n−1) · sd / √n`` (Student's t with n − 1 degrees of freedom:
  12.7 for two seeds, 4.3 for three, 2.8 for five).
- **shown**: the interval excludes 0 on the claimed side *and* ``|mean|`` is at least the minimum
  effect, *and* n ≥ 3. With n = 2 the same outcome is only **suggestive (n = 2)**.
- **opposite**: the interval excludes 0 on the other side, with the minimum effect (n ≥ 3;
  with n = 2 "suggestive opposite").
- **not shown**: anything else (the interval holds 0, or the effect is below the minimum).
- An **equivalence** claim ("changes nothing", "stays flat") is shown when the whole interval lies
  inside ±margin (n ≥ 3); a point estimate inside the margin is not enough.
- **by construction**: the code makes the result certain (e.g. statistics adaptation cannot
  change a norm that keeps no statistics); no test is made.
- **not enough runs**: fewer than two paired values; the verdict says what is missing.

The minimum effect of an error difference is at least :data:`MIN_EFFECT` points and at least
twice the binomial standard error of one error rate on the evaluated images
(:func:`binomial_se`): 1.45 points near 30% on 1,000 images, 0.46 on 10,000.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scipy import stats

MIN_SEEDS = 3  # fewer paired seeds than this: "suggestive" at best
MIN_EFFECT = 0.5  # points of error: the smallest difference ever called an effect
CONFIDENCE = 0.95

SHOWN = "shown"
OPPOSITE = "opposite"
NOT_SHOWN = "not shown"
SUGGESTIVE = "suggestive"
BY_CONSTRUCTION = "by construction"
NOT_ENOUGH = "not enough runs"

RULE = (
    "Verdict rule (normbench/report/verdicts.py): differences are paired by seed; a 95% Student-t "
    "interval with n − 1 degrees of freedom; **shown** when the interval excludes 0 on the "
    "claimed side, the mean is at least the minimum effect (max(0.5 points, 2 binomial standard "
    "errors of the evaluated error rate)) and n ≥ 3 seeds; with n = 2 the same is **suggestive "
    "(n = 2)**; **opposite** when it excludes 0 on the other side; otherwise **not shown**. "
    "Equivalence claims are shown only when the whole interval lies inside the stated margin. "
    "**By construction** marks results the code makes certain."
)


def binomial_se(error_pct: float, images: int) -> float:
    """Standard error, in points, of an error rate of ``error_pct`` % measured on ``images``."""
    if images <= 0 or not math.isfinite(error_pct):
        return math.nan
    p = min(max(error_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / images)


def min_effect(error_pct: float | None = None, images: int | None = None) -> float:
    """The smallest error difference (points) called an effect: MIN_EFFECT, or twice the
    binomial standard error of ``error_pct`` on ``images`` when that is larger."""
    if error_pct is None or not images:
        return MIN_EFFECT
    se = binomial_se(error_pct, images)
    return max(MIN_EFFECT, 2.0 * se) if math.isfinite(se) else MIN_EFFECT


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` paired values with its 95% t interval (nan bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def text(self, digits: int = 2, unit: str = "") -> str:
        """``+1.23 ± 0.45 (n = 3)``, where ± is the 95% interval's half-width."""
        if self.n == 0:
            return "not measured"
        if self.n == 1:
            return f"{self.mean:+.{digits}f}{unit} (n = 1)"
        return f"{self.mean:+.{digits}f}{unit} ± {self.half_width:.{digits}f} (n = {self.n})"


def estimate(values: Iterable[float]) -> Estimate:
    """Mean and 95% Student-t interval of ``values`` (NaNs dropped)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = sum(xs) / n
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2.0, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def paired(a: Mapping[object, float], b: Mapping[object, float]) -> Estimate:
    """``b − a`` over the keys (seeds) both hold a finite value for."""
    keys = [k for k in a if k in b]
    return estimate(b[k] - a[k] for k in keys if math.isfinite(a[k]) and math.isfinite(b[k]))


def judge_difference(d: Estimate, sign: int, effect: float = MIN_EFFECT) -> str:
    """The verdict on a difference claimed to be positive (``sign=+1``) or negative (``-1``)."""
    if d.n < 2:
        return f"{NOT_ENOUGH} (n = {d.n}; needs two or more paired seeds, {MIN_SEEDS} for shown)"
    big = abs(d.mean) >= effect
    claimed = (d.low > 0 if sign > 0 else d.high < 0) and big
    against = (d.high < 0 if sign > 0 else d.low > 0) and big
    if claimed:
        return SHOWN if d.n >= MIN_SEEDS else f"{SUGGESTIVE} (n = {d.n})"
    if against:
        return OPPOSITE if d.n >= MIN_SEEDS else f"{SUGGESTIVE} opposite (n = {d.n})"
    reason = "the interval holds 0" if d.low <= 0 <= d.high else f"below the {effect:.2f} minimum"
    return f"{NOT_SHOWN} ({reason})"


def judge_equivalence(d: Estimate, margin: float) -> str:
    """The verdict on a claim of no difference: the interval must lie inside ±``margin``."""
    if d.n < 2:
        return f"{NOT_ENOUGH} (n = {d.n}; needs two or more paired seeds, {MIN_SEEDS} for shown)"
    inside = -margin < d.low and d.high < margin
    if inside:
        return (
            f"{SHOWN} (within ±{margin:.3g})"
            if d.n >= MIN_SEEDS
            else f"{SUGGESTIVE} (n = {d.n}, within ±{margin:.3g})"
        )
    return f"{NOT_SHOWN} (the interval {d.low:+.2f} … {d.high:+.2f} leaves ±{margin:.3g})"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, our number at the same setting, the rule and the verdict."""

    study: str
    key: str
    claim: str
    source: str  # paper and its section in docs/papers.md
    paper: str  # the paper's number at the paper's setting
    ours: str  # our number at the same setting where we have it: mean ± interval (n)
    rule: str  # how the verdict is reached
    verdict: str
    scale: str  # the scale of our runs (dataset, model, steps, seeds)

    @property
    def outcome(self) -> str:
        """The verdict's first word(s): shown, suggestive, opposite, not shown, …"""
        for word in (BY_CONSTRUCTION, NOT_ENOUGH, NOT_SHOWN, SUGGESTIVE, OPPOSITE, SHOWN):
            if self.verdict.startswith(word):
                return word
        return self.verdict.split(":")[0]


CLAIM_FIELDS = tuple(f.name for f in fields(Claim))
CLAIMS_FILE = "claims.csv"


def write_claims(claims: list[Claim], out_dir: Path) -> Path:
    """``out_dir/claims.csv``: one row per claim (what the claims index reads)."""
    path = Path(out_dir) / CLAIMS_FILE
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CLAIM_FIELDS)
        writer.writeheader()
        for c in claims:
            writer.writerow(asdict(c))
    return path


def read_claims(path: Path) -> list[Claim]:
    """The claims of one study folder's claims.csv."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        return [Claim(**{k: row.get(k, "") for k in CLAIM_FIELDS}) for row in csv.DictReader(f)]


def claims_table(claims: list[Claim]) -> str:
    """The claims as a Markdown table (claim, paper, ours, verdict)."""
    lines = ["| claim | source | paper | ours | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        cells = (c.claim, c.source, c.paper, c.ours, f"**{c.verdict}**")
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
