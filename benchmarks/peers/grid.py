"""The accuracy grid: recfit's default against every Surprise algorithm and every single
recfit family on R1-R5, with intervals over seeds.

Rows: scikit-surprise's eleven algorithms at their defaults (``peer_surprise.py``), each
single recfit rating family at its defaults and ``model="auto"`` at its default budget
(``peer_recfit.py``'s grid rows), all on the shared split rows. Parts: R1 and R4 split
seeds, R2 training seeds on the fixed u1 split, R3 and R5 folds
(``common.PROTOCOLS``). Each (library, protocol, model) is one subprocess, run one after
another; every finished part is appended at once to ``results/grid.jsonl`` (a rerun skips
the parts already there), so a stopped grid loses at most one part.

The report (``--report``) gives, per protocol and row, the mean over the parts with a
95 % Student-t interval (``mean ± t(0.975, n-1) · s / sqrt(n)``), the default's verdict
against every other row (:func:`verdict`), a paired check (the interval of the per-part
differences, same parts only), and one error-bar plot per protocol
(``results/grid-R1.png``...); runs left out are listed with the reason.

Usage::

    python benchmarks/peers/grid.py run --only R1,R2 --libs surprise [--models SVD,NMF]
        [--parts seed42] [--timeout 3600] [--nice]
    python benchmarks/peers/grid.py report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JSONL = RESULTS / "grid.jsonl"

sys.path.insert(0, str(HERE))
from common import PROTOCOLS  # noqa: E402

SURPRISE = (
    "NormalPredictor", "BaselineOnly", "KNNBasic", "KNNWithMeans", "KNNWithZScore",
    "KNNBaseline", "SVD", "SVD++", "NMF", "SlopeOne", "CoClustering",
)  # fmt: skip
FAMILIES = ("svdpp", "dot", "mf", "nn", "baseline", "autorec", "timesvdpp", "bmf", "fm")
RECFIT = ("auto", *(f"family-{f}" for f in FAMILIES))
DEFAULT = "auto"
#: protocol -> (metric key, label); lower is better on every rating protocol
METRIC = {
    "R1": ("mse", "MSE"),
    "R2": ("rmse", "RMSE"),
    "R3": ("rmse", "RMSE (folds)"),
    "R4": ("rmse", "RMSE"),
    "R5": ("rmse", "RMSE (folds)"),
}

#: two-sided 95 % Student-t quantiles t(0.975, df), df 1-30 (beyond: 1.96)
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


# ----------------------------------------------------------------------------- intervals
def t_quantile(df: int) -> float:
    """``t(0.975, df)``: the two-sided 95 % Student-t quantile (1.96 beyond df 30).

    Example:
        >>> t_quantile(2), t_quantile(4), t_quantile(100)
        (4.303, 2.776, 1.96)
    """
    if df < 1:
        raise ValueError(f"expected df >= 1, received {df}")
    return T975[df - 1] if df <= len(T975) else 1.96


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the 95 % Student-t interval of the mean of ``values``
    (one value: the interval is the value itself, zero width).

    Example:
        >>> m, lo, hi = t_interval([1.0, 2.0, 3.0])
        >>> m, round(lo, 3), round(hi, 3)
        (2.0, -0.484, 4.484)
    """
    if not values:
        raise ValueError("expected at least one value, received none")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return mean, mean, mean
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def verdict(default: tuple[float, float, float], others: list[tuple[float, float, float]]) -> str:
    """The default's standing against ``others`` (each ``(mean, low, high)``, lower is
    better): ``"ahead, intervals apart"`` (its high end below every other's low end),
    ``"ahead on the mean only"`` (a lower mean than every other, an interval overlapping)
    or ``"behind"`` (some other's mean at or below its own).

    Example:
        >>> verdict((1.0, 0.9, 1.1), [(2.0, 1.8, 2.2), (1.5, 1.2, 1.8)])
        'ahead, intervals apart'
        >>> verdict((1.0, 0.9, 1.1), [(1.2, 1.05, 1.35)])
        'ahead on the mean only'
        >>> verdict((1.0, 0.9, 1.1), [(1.0, 0.95, 1.05)])
        'behind'
    """
    if any(o[0] <= default[0] for o in others):
        return "behind"
    if all(default[2] < o[1] for o in others):
        return "ahead, intervals apart"
    return "ahead on the mean only"


def paired(default: dict[str, float], other: dict[str, float]) -> tuple[float, float, float] | None:
    """The 95 % t-interval of ``default - other`` over the parts both ran (``part ->
    metric``); ``None`` with fewer than two shared parts."""
    shared = sorted(set(default) & set(other))
    if len(shared) < 2:
        return None
    return t_interval([default[p] - other[p] for p in shared])


# ----------------------------------------------------------------------------- running
def load_records(path: Path = JSONL) -> list[dict[str, Any]]:
    """Every record of the grid file (the last one wins for a repeated part)."""
    if not path.exists():
        return []
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out[key(r)] = r
    return list(out.values())


def key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(library, protocol, row name, part)`` of a record."""
    return (r["library"], r["protocol"], row_name(r), r["part"])


def row_name(r: dict[str, Any]) -> str:
    """A record's row: recfit's grid variant (``auto``, ``family-svdpp``) or the peer's
    model name."""
    return str(r.get("variant") or r["model"]) if r["library"] == "recfit" else str(r["model"])


def run(args: argparse.Namespace) -> int:
    from run import BENCH

    done = {key(r) for r in load_records()}
    libs = [lib for lib in args.libs.split(",") if lib]
    for proto in [p for p in args.only.split(",") if p]:
        parts = args.parts.split(",") if args.parts else list(PROTOCOLS[proto][1])
        for lib in libs:
            names = args.models.split(",") if args.models else (
                SURPRISE if lib == "surprise" else RECFIT
            )  # fmt: skip
            for name in names:
                todo = [p for p in parts if (lib, proto, name, p) not in done]
                if not todo:
                    continue
                py = BENCH / "surprise" / "bin" / "python" if lib == "surprise" else (
                    ROOT / ".venv" / "bin" / "python"
                )  # fmt: skip
                script = "peer_surprise.py" if lib == "surprise" else "peer_recfit.py"
                cmd = [str(py), str(HERE / script), proto, "--models", name,
                       "--parts", ",".join(todo)]  # fmt: skip
                if args.nice:
                    cmd = ["nice", "-n", "10", *cmd]
                print(f"-- {lib} {name} {proto} {todo} load {os.getloadavg()[0]:.2f}", flush=True)
                one(cmd, args.timeout, lib, proto, name)
    return 0


def one(cmd: list[str], timeout: float, lib: str, proto: str, name: str) -> None:
    """Run one job, appending each JSON line to the grid file as it comes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_THREADS": "1"}
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=ROOT) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                with JSONL.open("a") as f:
                    f.write(line)
                r = json.loads(line)
                m = METRIC[proto][0]
                print(f"   {r['part']}: {m} {r['metrics'][m]:.4f} fit {r['fit_seconds']:.1f} s "
                      f"load {r.get('load_start', float('nan'))} -> {r['load_avg'][0]}",
                      flush=True)  # fmt: skip
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                print(f"   timed out after {timeout:.0f} s", flush=True)
                break
        err = proc.stderr.read() if proc.stderr else ""
        rc = proc.wait()
    if rc not in (0, -9):
        print(f"   failed (exit {rc}): {' | '.join(err.strip().splitlines()[-3:])}", flush=True)
    print(f"   {time.perf_counter() - t0:.0f} s wall", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--only", default="R1,R2,R3")
    r.add_argument("--libs", default="surprise,recfit")
    r.add_argument("--models", default="")
    r.add_argument("--parts", default="")
    r.add_argument("--timeout", type=float, default=3600.0)
    r.add_argument(
        "--nice", action="store_true", help="nice -n 10 (runs whose time is not reported)"
    )
    rp = sub.add_parser("report")
    rp.add_argument("--extra", action="append", default=[],
                    help="more records (JSON lines), e.g. auto's R4 runs made elsewhere")  # fmt: skip
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.cmd == "run":
        return run(args)
    return report([Path(x) for x in args.extra])


# ----------------------------------------------------------------------------- report
#: runs left out on purpose: (library, protocol, row) -> reason (a row with no record and
#: no entry here is listed as "not run: no time left in this session")
SKIPPED: dict[tuple[str, str, str], str] = {
    **{("surprise", p, "SVD++"): (
        "about 36 min a part on this machine (Surprise's README: 41 min for 5 ml-1m folds "
        "on an i5 laptop; about 3 hours for 5 folds measured here before)"
    ) for p in ("R4", "R5")},
    **{("surprise", "R4", m): (
        "user-based k-NN on ml-1m: KNNBaseline took about 50 s a part here on R4 at load 1 "
        "(README: 5.5-6 min for 5 folds); left out for time"
    ) for m in ("KNNBasic", "KNNWithMeans", "KNNWithZScore")},
}  # fmt: skip

#: Surprise's own ml-1m 5-fold figures (its README: RMSE, total time of the 5 folds on an
#: Intel i5 11th Gen laptop), published, not measured here
PUBLISHED_R5 = {
    "SVD": (0.873, "1:07"), "SVD++": (0.862, "41:06"), "NMF": (0.916, "1:39"),
    "SlopeOne": (0.907, "2:31"), "KNNBasic": (0.923, "5:27"), "KNNWithMeans": (0.929, "5:43"),
    "KNNBaseline": (0.895, "5:55"), "CoClustering": (0.915, "0:31"),
    "BaselineOnly": (0.909, "0:19"), "NormalPredictor": (1.504, "0:19"),
}  # fmt: skip


def rows_of(records: list[dict[str, Any]], proto: str) -> dict[tuple[str, str], dict[str, float]]:
    """``(library, row) -> {part: metric}`` of one protocol."""
    metric = METRIC[proto][0]
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        if r["protocol"] == proto:
            out.setdefault((r["library"], row_name(r)), {})[r["part"]] = r["metrics"][metric]
    return out


def protocol_summary(records: list[dict[str, Any]], proto: str) -> dict[str, Any]:
    """One protocol's rows (mean and 95 % t-interval over the parts run, each other row's
    paired difference from the default) and the default's verdict on its own parts."""
    rows = rows_of(records, proto)
    recs = [r for r in records if r["protocol"] == proto]
    default = rows.get(("recfit", DEFAULT))
    out_rows = []
    for (lib, name), parts in rows.items():
        vals = [parts[p] for p in sorted(parts)]
        mean, lo, hi = t_interval(vals)
        mine = [r for r in recs if (r["library"], row_name(r)) == (lib, name)]
        loads = [float(r.get("load_start", r["load_avg"][0])) for r in mine]
        row = {"library": lib, "row": name, "parts": sorted(parts), "mean": mean, "lo": lo,
               "hi": hi, "values": vals,
               "fit_seconds": statistics.median(float(r["fit_seconds"]) for r in mine),
               "load": [min(loads), max(loads)]}  # fmt: skip
        if default is not None and (lib, name) != ("recfit", DEFAULT):
            row["paired"] = paired(default, parts)
        out_rows.append(row)
    out_rows.sort(key=lambda r: r["mean"])
    res: dict[str, Any] = {"protocol": proto, "rows": out_rows}
    if default is not None:
        own = sorted(default)
        d = t_interval([default[p] for p in own])
        others = []
        for (lib, name), parts in rows.items():
            if (lib, name) == ("recfit", DEFAULT):
                continue
            shared = [parts[p] for p in own if p in parts]
            if shared:
                others.append(((lib, name), t_interval(shared), len(shared)))
        res["default"] = {"parts": own, "interval": d}
        res["verdict"] = verdict(d, [o[1] for o in others]) if others else "nothing to compare"
        if others:
            best = min(others, key=lambda o: o[1][0])
            res["best_other"] = {"library": best[0][0], "row": best[0][1],
                                 "interval": best[1], "n": best[2]}  # fmt: skip
        ahead_paired = [r for r in out_rows if r.get("paired") and r["paired"][2] < 0]
        res["paired_ahead"] = len(ahead_paired)
        res["paired_total"] = sum(1 for r in out_rows if r.get("paired"))
    return res


def not_run(records: list[dict[str, Any]], proto: str) -> list[tuple[str, str, str]]:
    """``(library, row, reason)`` for every grid row with no record on ``proto``."""
    have = set(rows_of(records, proto))
    out = []
    for lib, names in (("recfit", RECFIT), ("surprise", SURPRISE)):
        for name in names:
            if (lib, name) in have:
                continue
            reason = SKIPPED.get((lib, proto, name), "no time left in this session")
            if lib == "surprise" and proto == "R5" and name in PUBLISHED_R5:
                v, t = PUBLISHED_R5[name]
                reason += f"; published (Surprise README, 5 folds in {t}): RMSE {v:.3f}"
            out.append((lib, name, reason))
    return out


def _iv(m: float, lo: float, hi: float) -> str:
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def markdown(records: list[dict[str, Any]], protos: tuple[str, ...] = tuple(METRIC)) -> str:
    """The grid's tables: the verdicts, then one table per protocol."""
    sums = {p: protocol_summary(records, p) for p in protos}
    lines = [
        "## The default against every Surprise algorithm and every single family",
        "",
        "Mean over the parts with a 95 % Student-t interval (mean ± t(0.975, n−1)·s/√n); "
        "R1/R4: split seeds, R2: training seeds on u1, R3/R5: folds. The verdict compares "
        'the default (`model="auto"` at its default budget) with every other row on the '
        "default's parts: *ahead, intervals apart* (its interval's high end below every "
        "other's low end), *ahead on the mean only*, or *behind*. *Paired*: rows whose "
        "per-part difference from the default has a 95 % t-interval below zero (same parts).",
        "",
        "| protocol | default | best other row | verdict | paired: default ahead of | not run |",
        "|---|---|---|---|---|---|",
    ]
    for p, s in sums.items():
        n_not = len(not_run(records, p))
        if "default" not in s:
            lines.append(f"| {p} | not run | — | not measured | — | {n_not} row(s) |")
            continue
        d, b = s["default"], s.get("best_other")
        best = f"{b['library']} {b['row']} {_iv(*b['interval'])}" if b else "—"
        lines.append(
            f"| {p} ({METRIC[p][1]}, {len(d['parts'])} parts) | {_iv(*d['interval'])} | {best} "
            f"| {s['verdict']} | {s['paired_ahead']} of {s['paired_total']} | {n_not} row(s) |"
        )
    for p, s in sums.items():
        label = METRIC[p][1]
        lines += ["", f"### {p}: {label} ({PROTOCOLS[p][2]}; lower is better)", "",
                  f"| library | row | parts | {label} mean [95 % interval] | default − row "
                  "(paired) | fit s (median) | load at start |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in s["rows"]:
            pr = r.get("paired")
            pc = "—" if pr is None else f"{pr[0]:+.4f} [{pr[1]:+.4f}, {pr[2]:+.4f}]"
            name = f"**{r['row']}**" if r["row"] == DEFAULT else r["row"]
            lines.append(
                f"| {r['library']} | {name} | {len(r['parts'])} | "
                f"{_iv(r['mean'], r['lo'], r['hi'])} | {pc} | {r['fit_seconds']:.1f} | "
                f"{r['load'][0]:.1f}–{r['load'][1]:.1f} |"
            )
        for lib, name, reason in not_run(records, p):
            lines.append(f"| {lib} | {name} | — | not run: {reason} | | | |")
        sources = sorted(
            {str(r["source"]) for r in records if r["protocol"] == p and "source" in r}
        )
        lines += [f"\nFrom elsewhere: {src}" for src in sources]
    lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """One protocol's error bars: every row's mean and 95 % interval, its parts as dots;
    the default in red, recfit's families in blue, Surprise in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"][::-1]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        color = "tab:red" if r["row"] == DEFAULT else (
            "tab:blue" if r["library"] == "recfit" else "tab:gray"
        )  # fmt: skip
        ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]],
                    fmt="o", color=color, capsize=3, ms=4)  # fmt: skip
        ax.scatter(r["values"], [y] * len(r["values"]), s=6, color=color, alpha=0.4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['library']} {r['row']} ({len(r['parts'])})" for r in rows],
                       fontsize=7)  # fmt: skip
    proto = summary["protocol"]
    lo = min(r["lo"] for r in rows)
    hi = max(r["hi"] for r in rows if r["row"] != "NormalPredictor") if len(rows) > 1 else lo
    right = max(hi, lo + 0.02) + 0.01
    ax.set_xlim(lo - 0.01, right)  # NormalPredictor is far off the chart: its value in words
    for y, r in enumerate(rows):
        if r["mean"] > right:
            ax.text(right, y, f"{r['mean']:.3f} →", ha="right", va="center", fontsize=7)
    ax.set_xlabel(f"{METRIC[proto][1]} (lower is better); bars: 95 % t-interval over parts")
    ax.set_title(f"{proto}: {PROTOCOLS[proto][2]}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(extra: list[Path] | None = None) -> int:
    records = load_records()
    for path in extra or []:
        records += load_records(path)
    protos = tuple(METRIC)  # a protocol with no record still lists what was not run
    text = markdown(records, protos)
    (RESULTS / "grid.md").write_text(text)
    sums = {p: protocol_summary(records, p) for p in protos}
    (RESULTS / "grid.json").write_text(json.dumps(
        {"summary": sums, "not_run": {p: not_run(records, p) for p in protos}},
        indent=2, sort_keys=True) + "\n")  # fmt: skip
    for p, s in sums.items():
        try:
            plot(s, RESULTS / f"grid-{p}.png")
        except ImportError as exc:
            print(f"no plot: {exc}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
