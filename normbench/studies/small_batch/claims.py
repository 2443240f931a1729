"""GN paper Figure 1 / Table 2: validation error vs images per device, beside the paper's numbers.

A sweep is a small-batch study when its runs set ``per_device.images`` to more than one value.
A run's error is the median validation error (%) of its last 5 evaluations, as the paper's median
of the final 5 epochs. Norms that never use other samples (GN, LN, IN) are, in ghost mode, the
same computation at every N: where such a norm was run at one N only, its numbers stand for every
N and are marked so; where it was run at several, the report checks that they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from normbench.report.collect import Run
from normbench.report.flags import not_enough
from normbench.report.papers import GN_PAPER

LAST_EVALS = 5
MIN_EFFECT = 0.5  # points of error: smaller differences are not called a rise or a gap
GN_FLAT_TOL = 0.2  # the paper's "GN stays flat" (±0.2 points)
NORM_ORDER = ("batch", "group", "layer", "instance", "batch_renorm")
NORM_LABEL = {"batch": "BN", "group": "GN", "layer": "LN", "instance": "IN", "batch_renorm": "BRN"}
NORM_COLOR = {
    "batch": "tab:blue",
    "group": "tab:red",
    "layer": "tab:green",
    "instance": "tab:purple",
    "batch_renorm": "tab:orange",
}


def images_per_device(run: Run) -> int | None:
    """``per_device.images`` of a run (None: statistics over the whole batch)."""
    value = (run.config.get("per_device") or {}).get("images")
    return None if value is None else int(value)


def is_small_batch_study(runs: list[Run]) -> bool:
    """Whether these runs differ in images per device (the GN paper's sweep)."""
    return len({n for r in runs if (n := images_per_device(r)) is not None}) > 1


def run_error(run: Run, last: int = LAST_EVALS) -> tuple[float, int]:
    """(median val error in % of the run's last ``last`` evaluations after step 0, evaluations used)."""
    m = run.metrics
    if m.empty or "val_error" not in m:
        return math.nan, 0
    vals = m[m["step"] > 0]["val_error"].dropna().tail(last)
    return (100.0 * float(vals.median()), len(vals)) if len(vals) else (math.nan, 0)


def batch_independent(run: Run) -> bool:
    """Whether N changes nothing in the run: ghost mode, and a norm that ignores the other
    samples of its batch (as its summary.json records, see :attr:`Run.batch_dependent`)."""
    mode = (run.config.get("per_device") or {}).get("mode", "ghost")
    return mode == "ghost" and not run.batch_dependent


def points(runs: list[Run]) -> pd.DataFrame:
    """One row per complete run: norm, images, seed, error (%), evaluations used, independence."""
    rows = []
    for r in runs:
        err, used = run_error(r)
        epoch = float(r.metrics["epoch"].iloc[-1]) if "epoch" in r.metrics else math.nan
        rows.append(
            {
                "norm": r.norm,
                "images": images_per_device(r),
                "seed": r.seed,
                "error": err,
                "evals": used,
                "epochs": epoch,
                "wall_time_s": r.summary.get("wall_time_s"),
                "independent": batch_independent(r),
                "run": str(r.path),
            }
        )
    cols = [
        "norm",
        "images",
        "seed",
        "error",
        "evals",
        "epochs",
        "wall_time_s",
        "independent",
        "run",
    ]
    return pd.DataFrame(rows, columns=cols)


def expand_independent(pts: pd.DataFrame, images: list[int]) -> pd.DataFrame:
    """Add ``measured``. An N-independent norm (ghost mode) not run at some N gets, there, the
    numbers of the largest N it was run at (measured=False): the same computation."""
    out = [pts.assign(measured=True)]
    for _, g in pts[pts["independent"]].groupby("norm"):
        ran = sorted(set(g["images"]), reverse=True)
        source = g[g["images"] == ran[0]]
        out += [source.assign(images=n, measured=False, run="") for n in images if n not in ran]
    return pd.concat(out, ignore_index=True)


def curve(pts: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min, max of the error over seeds per (norm, images); ``measured`` as above."""
    g = pts.groupby(["norm", "images"])
    out = (
        g["error"]
        .agg(["mean", "std", "min", "max"])
        .assign(seeds=g.size(), measured=g["measured"].all())
        .reset_index()
    )
    return out.fillna({"std": 0.0}).sort_values(["norm", "images"], ascending=[True, False])


@dataclass
class Diff:
    """err(b) − err(a), paired by seed."""

    mean: float
    se: float  # standard error of the mean paired difference (nan with one seed)
    seeds: int

    @property
    def significant(self) -> bool:
        """Larger than both twice its standard error and MIN_EFFECT points."""
        return self.seeds >= 2 and abs(self.mean) > max(2 * self.se, MIN_EFFECT)

    def text(self) -> str:
        if self.seeds == 0:
            return "not measured"
        spread = f" ± {self.se:.2f}" if self.seeds >= 2 else ""
        return f"{self.mean:+.2f}{spread}"


def paired(pts: pd.DataFrame, a: tuple[str, int], b: tuple[str, int]) -> Diff:
    """err(b) − err(a) over the seeds both have; ``se`` = std of the differences / sqrt(seeds)."""
    ea = pts[(pts["norm"] == a[0]) & (pts["images"] == a[1])].set_index("seed")["error"]
    eb = pts[(pts["norm"] == b[0]) & (pts["images"] == b[1])].set_index("seed")["error"]
    d = (eb - ea).dropna()
    if d.empty:
        return Diff(math.nan, math.nan, 0)
    se = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) >= 2 else math.nan
    return Diff(float(d.mean()), se, len(d))


@dataclass
class Verdict:
    """One of the paper's claims, what our runs give, and whether they show it."""

    claim: str
    ours: str
    verdict: str


def _has(pts: pd.DataFrame, norm: str, n: int) -> bool:
    return bool(((pts["norm"] == norm) & (pts["images"] == n)).any())


def verdicts(pts: pd.DataFrame) -> list[Verdict]:
    """The paper's claims (docs/papers.md §2.6, §3) judged on per-seed errors, one verdict per claim.

    ``pts`` has columns norm, images, seed, error (%) and optionally measured (False where an
    N-independent norm's number stands for an N it was not run at). A difference counts when it
    exceeds twice its seed standard error and MIN_EFFECT points. A claim with nothing to compare
    (a norm not run, no seed in common) says "not enough runs" and what it needs.
    """
    if "measured" not in pts:
        pts = pts.assign(measured=True)
    claims = GN_PAPER["claims"]
    ns = sorted(set(pts["images"]), reverse=True)
    top, small = (ns[0], ns[-1]) if ns else (32, 2)
    out = []
    # BN rises at small N
    bn = {
        n: paired(pts, ("batch", top), ("batch", n))
        for n in ns
        if n != top and _has(pts, "batch", n)
    }
    bn = {n: d for n, d in bn.items() if d.seeds}  # only N sharing a seed with N=top
    if bn:
        rises = {n: d.significant and d.mean > 0 for n, d in bn.items()}
        ours = "; ".join(f"N={n}: {d.text()}" for n, d in bn.items())
        smallest = [n for n in bn if n <= 4]
        sharp = bool(smallest) and all(rises[n] for n in smallest)
        mid = [n for n in bn if n >= 8]
        flat_mid = [n for n in mid if not rises[n]]
        if sharp and all(bn[a].mean <= bn[b].mean for a, b in zip(bn, list(bn)[1:], strict=False)):
            v = "shown: the error grows as N shrinks"
        elif sharp:
            v = "shown at N ≤ 4 (not monotone above)"
        elif any(rises.values()):
            v = f"partly shown: a rise beyond the seed spread only at N = {', '.join(str(n) for n, r in rises.items() if r)}"
        else:
            v = "not shown: no rise beyond the seed spread"
        if flat_mid:
            v += f"; flat (no significant rise) at N = {', '.join(map(str, flat_mid))}"
        out.append(
            Verdict(claims["bn_rise"], f"BN error − BN at N={top}, paired by seed: {ours}", v)
        )
    else:
        needs = not_enough("complete BN runs at two or more N with the same seeds")
        out.append(Verdict(claims["bn_rise"], "BN not run at two N with a common seed", needs))
    # GN flat
    gn = pts[pts["norm"] == "group"]
    if not gn.empty:
        diffs = {
            n: paired(pts, ("group", top), ("group", n))
            for n in ns
            if n != top and _has(pts, "group", n)
        }
        diffs = {n: d for n, d in diffs.items() if d.seeds}
        measured_ns = sorted(set(gn[gn["measured"]]["images"]), reverse=True)
        worst = max(
            (abs(d.mean) + 2 * (0 if math.isnan(d.se) else d.se) for d in diffs.values()),
            default=0.0,
        )
        filled = not gn["measured"].all()  # N-independent GN stands for N it was not run at
        if len(measured_ns) <= 1 and filled and diffs:
            v = (
                f"holds by construction, not measured ({not_enough('GN runs at two or more N')} "
                f"to measure it): GN was run at N={measured_ns[0] if measured_ns else '?'} "
                "only; in ghost mode GN uses no other image and nothing else changes with N"
            )
        elif len(measured_ns) <= 1 or not diffs:
            v = not_enough("complete GN runs at two or more N with the same seeds")
        elif worst == 0 and "independent" in gn and gn["independent"].all():
            v = (
                f"shown, by construction: identical at N = {', '.join(map(str, measured_ns))} (in ghost "
                "mode GN uses no other image); the paper's flat GN, with batch 8N and lr scaled, is a "
                "different test (per_device.mode=real)"
            )
        elif worst <= GN_FLAT_TOL:
            v = f"shown (within ±{GN_FLAT_TOL} at N = {', '.join(map(str, measured_ns))})"
        else:
            v = f"not shown: GN moves by up to {worst:.2f} (|mean| + 2 se)"
        ours = "; ".join(f"N={n}: {d.text()}" for n, d in diffs.items()) or "one N only"
        out.append(Verdict(claims["gn_flat"], f"GN error − GN at N={top}: {ours}", v))
    else:
        out.append(Verdict(claims["gn_flat"], "GN not run", not_enough("complete GN runs")))
    # BN beats GN at large N
    d = paired(pts, ("batch", top), ("group", top))
    if d.seeds:
        v = (
            "shown"
            + (f", but the gap is {d.mean / 0.5:.0f}x the paper's 0.5" if d.mean > 2 else "")
            if d.significant and d.mean > 0
            else "opposite: GN has the lower error"
            if d.significant
            else "not shown: within the seed spread"
        )
        out.append(Verdict(claims["bn_beats_gn"], f"GN − BN at N={top}: {d.text()}", v))
    else:
        needs = not_enough(f"complete BN and GN runs at N={top} with the same seeds")
        out.append(Verdict(claims["bn_beats_gn"], f"BN and GN not both run at N={top}", needs))
    # LN, IN worse than GN
    dl, di = (
        paired(pts, ("group", top), ("layer", top)),
        paired(pts, ("group", top), ("instance", top)),
    )
    lacking = [name for name, d in (("LN", dl), ("IN", di)) if not d.seeds]
    if lacking:
        needs = not_enough(f"complete {', '.join(lacking)} and GN runs at N={top} (same seeds)")
        out.append(
            Verdict(claims["ln_in"], f"LN − GN: {dl.text()}; IN − GN: {di.text()} (N={top})", needs)
        )
    else:
        ln_worse, in_worse = dl.significant and dl.mean > 0, di.significant and di.mean > 0
        if ln_worse and in_worse and di.mean > dl.mean:
            v = "shown"
        elif ln_worse or in_worse:
            v = "partly shown: " + ", ".join(
                s
                for s, ok in (
                    (f"LN worse than GN: {'yes' if ln_worse else 'no'}", True),
                    (f"IN worse than GN: {'yes' if in_worse else 'no'}", True),
                    (f"IN worse than LN: {'yes' if di.mean > dl.mean else 'no'}", True),
                )
                if ok
            )
        else:
            v = "not shown: within the seed spread or reversed"
        out.append(
            Verdict(claims["ln_in"], f"LN − GN: {dl.text()}; IN − GN: {di.text()} (N={top})", v)
        )
    # GN wins at the smallest N
    d = paired(pts, ("batch", small), ("group", small))
    if d.seeds and small != top:
        v = (
            "shown"
            if d.significant and d.mean < 0
            else "opposite: BN has the lower error"
            if d.significant
            else "not shown: within the seed spread"
        )
        out.append(
            Verdict(claims["gn_wins_small"], f"GN − BN at N={small}: {d.text()} (paper −10.6)", v)
        )
    else:
        needs = not_enough(f"complete BN and GN runs at a small N (below N={top}), same seeds")
        out.append(Verdict(claims["gn_wins_small"], f"BN and GN not both run at N={small}", needs))
    # Batch Renorm
    out.append(_brn_verdict(pts, ns, top, claims["brn"]))
    return out


def _brn_verdict(pts: pd.DataFrame, ns: list[int], top: int, claim: str) -> Verdict:
    small = [
        n
        for n in ns
        if n <= 4
        and paired(pts, ("batch_renorm", n), ("batch", n)).seeds
        and paired(pts, ("batch", top), ("batch_renorm", n)).seeds
    ]
    if not small:
        needs = not_enough(f"complete BRN and BN runs at an N ≤ 4 and BN at N={top}, same seeds")
        return Verdict(claim, "BRN and BN not both run at N ≤ 4", needs)
    parts, shown = [], []
    for n in small:
        gain = paired(pts, ("batch_renorm", n), ("batch", n))  # BN − BRN: > 0 when BRN helps
        left = paired(
            pts, ("batch", top), ("batch_renorm", n)
        )  # BRN(n) − BN(top): > 0 when not all
        lost = paired(pts, ("batch", top), ("batch", n)).mean
        frac = f", {100 * gain.mean / lost:.0f}% of BN's loss" if lost > 0 else ""
        parts.append(f"N={n}: BN − BRN {gain.text()}{frac}; BRN − BN(N={top}) {left.text()}")
        shown.append(gain.significant and gain.mean > 0 and left.significant and left.mean > 0)
    same = paired(pts, ("batch", top), ("batch_renorm", top))
    tail = f"; at N={top}: BRN − BN {same.text()}" if same.seeds else ""
    verdict = (
        "shown"
        if all(shown)
        else f"shown at N = {', '.join(str(n) for n, s in zip(small, shown, strict=True) if s)}"
        if any(shown)
        else "not shown: BRN does not beat BN beyond the seed spread, or recovers all"
    )
    if same.seeds:
        verdict += (
            "; BRN ≈ BN at normal batch"
            if not same.significant
            else f"; at normal batch BRN is {'worse' if same.mean > 0 else 'better'} than BN by "
            f"{abs(same.mean):.1f} (not ≈)"
        )
    return Verdict(claim, "; ".join(parts) + tail, verdict)


def comparison_table(cur: pd.DataFrame, pts: pd.DataFrame) -> pd.DataFrame:
    """Paper's and our error per norm × images per device, and GN − BN."""
    ns = sorted(set(cur["images"]), reverse=True)
    rows = []
    for norm in [n for n in NORM_ORDER if n in set(cur["norm"])]:
        paper = GN_PAPER["table2"].get(norm) or (
            {32: GN_PAPER["table1"][norm]} if norm in GN_PAPER["table1"] else GN_PAPER.get(norm, {})
        )
        rows.append({"": f"{NORM_LABEL[norm]}, paper", **{str(n): _num(paper.get(n)) for n in ns}})
        row = {"": f"{NORM_LABEL[norm]}, ours"}
        for n in ns:
            c = cur[(cur["norm"] == norm) & (cur["images"] == n)]
            if c.empty:
                row[str(n)] = "–"
            else:
                c = c.iloc[0]
                row[str(n)] = f"{c['mean']:.2f} ± {c['std']:.2f}" + ("" if c["measured"] else " ≡")
        rows.append(row)
    if {"batch", "group"} <= set(cur["norm"]):
        paper = {
            n: GN_PAPER["table2"]["group"][n] - GN_PAPER["table2"]["batch"][n]
            for n in GN_PAPER["table2"]["batch"]
        }
        rows.append({"": "GN − BN, paper", **{str(n): _num(paper.get(n), signed=True) for n in ns}})
        rows.append(
            {
                "": "GN − BN, ours (paired by seed, ± se)",
                **{str(n): paired(pts, ("batch", n), ("group", n)).text() for n in ns},
            }
        )
    return pd.DataFrame(rows)


def _num(v: float | None, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")
