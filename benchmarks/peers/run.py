"""Run recfit and its peers on the shared protocols; write peers.json, peers.md, peers.png.

Each peer runs in its own virtual environment under ``.bench/`` (made by
``make bench-peers`` from ``benchmarks/peers/requirements-<peer>.txt``); recfit runs
in the project venv. Every run is one subprocess per (library, protocol, model) that
prints one JSON line per split part; this driver collects them, lists runs that could
not be made with the reason, and writes:

- ``benchmarks/results/peers.json``: every JSON line plus the runs not made, the
  machine's load average before and after, and the wall time;
- ``benchmarks/results/peers.md``: per protocol, each library's metric (mean over the
  parts run) and fit time, and recfit's time ratio and metric difference against each;
  then the targets of the peer comparison with "met" / "not met";
- ``benchmarks/results/peers.png``: the metric and the fit time per protocol.

Usage::

    python benchmarks/peers/run.py [--quick] [--only R1,T2] [--libs recfit,surprise]
                                   [--timeout 900] [--report-only [--json PATH]]

``--quick`` runs the first seed / fold of each protocol and the cheap models only.
``--report-only`` rebuilds peers.md and peers.png from an existing peers.json (or from
``--json PATH``, writing PATH's .md and .png beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCH = ROOT / ".bench"

#: protocol -> (metric key, higher is better, label)
METRIC = {
    "R1": ("mse", False, "valid MSE"),
    "R2": ("rmse", False, "RMSE"),
    "R3": ("rmse", False, "RMSE (mean of folds)"),
    "R5": ("rmse", False, "RMSE (mean of folds)"),
    "T1": ("top_100_accuracy", True, "top-100 accuracy"),
    "T2": ("recall@20", True, "Recall@20"),
    "S-T": ("seconds_per_sweep", False, "seconds per ALS sweep"),
}
EXTRA = {"T2": ("ndcg@20", "hit_rate@20"), "S-T": ("first_sweep_seconds",)}
PROTOCOL_ORDER = ("R1", "R2", "R3", "R5", "T1", "T2", "S-T")
TOPN_MODELS = "topn-popularity,topn-itemknn,topn-ease,topn-ials,topn-bpr,topn-auto"


@dataclass
class Job:
    library: str
    protocol: str
    model: str | None  # the --models value; None: all the script's models
    venv: str  # "" for the project venv, else a folder under .bench
    script: str
    parts: str | None = None  # --parts override (e.g. only one fold)
    quick: bool = True  # also run in --quick mode
    skip: str | None = None  # a reason not to run it at all

    def name(self) -> str:
        m = f" {self.model}" if self.model else ""
        return f"{self.library}{m} on {self.protocol}"


def jobs() -> list[Job]:
    j: list[Job] = []
    for p in ("R1", "R2", "R3", "R5", "T1"):
        j.append(Job("recfit", p, None, "", "peer_recfit.py"))
    j.append(Job("recfit", "T2", "softmax,popularity", "", "peer_recfit.py"))
    j.append(Job("recfit", "T2", TOPN_MODELS, "", "peer_recfit.py"))
    j.append(Job("recfit", "S-T", None, "", "peer_recfit.py"))
    j.append(Job("fastai", "R1", "dot", "fastai", "peer_fastai.py"))
    j.append(Job("fastai", "R1", "nn", "fastai", "peer_fastai.py", quick=False))
    for p in ("R1", "R2", "R3", "R5"):
        for m in ("SVD", "BaselineOnly"):
            j.append(Job("surprise", p, m, "surprise", "peer_surprise.py"))
        j.append(Job("surprise", p, "KNNBaseline", "surprise", "peer_surprise.py", quick=p != "R5"))
        if p == "R5":  # about 2 minutes per ml-1m fold (prediction loop): one fold only
            j[-1].parts = "fold0"
    for p in ("R2", "R3"):
        j.append(Job("surprise", p, "SVD++", "surprise", "peer_surprise.py", quick=False))
    j.append(
        Job(
            "surprise", "R1", "SVD++", "surprise", "peer_surprise.py",
            skip="skipped to fit the time budget: SVD++ is measured on R2 and R3 (same data, "
            "same library); three more ml-100k fits add minutes and no information",
        )
    )  # fmt: skip
    j.append(
        Job(
            "surprise", "R5", "SVD++", "surprise", "peer_surprise.py",
            skip="skipped to fit the 45-minute budget: Surprise's own benchmark puts SVD++ "
            "5-fold on ml-1m at about 3 hours on one core (published RMSE 0.862)",
        )
    )  # fmt: skip
    j.append(Job("implicit", "T2", "ALS", "implicit", "peer_implicit.py"))
    j.append(Job("implicit", "T2", "BPR", "implicit", "peer_implicit.py"))
    j.append(Job("implicit", "S-T", None, "implicit", "peer_implicit.py"))
    j.append(Job("numpy-ease", "T2", None, "", "peer_ease_numpy.py"))
    j.append(Job("keras-rs", "T1", "1", "keras", "peer_keras_rs.py"))
    for depth in ("2", "3"):
        j.append(Job("keras-rs", "T1", depth, "keras", "peer_keras_rs.py", quick=False))
    for p in ("R1", "R2", "R3", "R5"):
        j.append(Job("implicit", p, None, "", "", skip="implicit has no rating-prediction model"))
        j.append(Job("keras-rs", p, None, "", "", skip="keras-rs has no rating-prediction recipe "
                     "in the issue's scope (its peer run is two-tower retrieval, T1)"))  # fmt: skip
    j.append(Job("keras-rs", "T2", None, "", "", skip="T2's reference peer is implicit ALS; "
                 "keras-rs runs T1"))  # fmt: skip
    j.append(Job("fastai", "R2", None, "", "", skip="R1 is fastai's protocol; fastai runs R1 "
                 "only (about a minute per fit on this machine)"))  # fmt: skip
    return j


def python_for(job: Job) -> Path:
    if not job.venv:
        venv = ROOT / ".venv"
        return venv / "bin" / "python" if venv.exists() else Path(sys.executable)
    return BENCH / job.venv / "bin" / "python"


def unavailable(job: Job) -> str | None:
    """Why ``job``'s environment cannot run it, or ``None``."""
    if not job.venv:
        return None
    py = python_for(job)
    if not py.exists():
        return f"not installed: {py} missing (run `make bench-peers`)"
    marker = BENCH / job.venv / ".installed"
    if not marker.exists():
        log = BENCH / f"{job.venv}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        return "install failed: " + (" | ".join(tail) or "no install log")
    return None


def run_job(job: Job, quick: bool, timeout: float) -> tuple[list[dict[str, Any]], str | None]:
    cmd = [str(python_for(job)), str(HERE / job.script), job.protocol]
    if quick:
        cmd.append("--quick")
    if job.model:
        cmd += ["--models", job.model]
    if job.parts:
        cmd += ["--parts", job.parts]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("BENCH_THREADS", "1")
    if quick and job.protocol == "S-T":  # a tenth of ml-25m's shape (BENCH_ST_SCALE overrides)
        env.setdefault("BENCH_ST_SCALE", "0.1")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        recs = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        return recs, f"timed out after {timeout:.0f} s ({len(recs)} part(s) finished)"
    recs = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return recs, f"failed (exit {proc.returncode}): {tail}"
    if not recs:
        return recs, "produced no result line"
    return recs, None


# ----------------------------------------------------------------------------- report
#: protocol -> (recfit variant, peer model) run with the same configuration
PAIRS = {
    "R1": (("fastai", "EmbeddingDotBias (50)"), ("nn", "EmbeddingNN (layers [100])")),
    "T1": (("mse", "two-tower, MSE objective, 1 layer(s) (32,)"),),
}


def speedup(peer_s: float, mine_s: float) -> str:
    """``"12.3x faster"`` / ``"4.0x slower"``: recfit's fit time against a peer's."""
    if mine_s <= 0 or peer_s <= 0:
        return "—"
    r = peer_s / mine_s
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"


def summarize(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per protocol, one row per (library, model): mean metrics and median fit time over
    parts (the median resists the load spikes of a shared machine)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["protocol"], r["library"], r["model"]), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for (proto, lib, model), rs in groups.items():
        keys = rs[0]["metrics"].keys()
        out.setdefault(proto, []).append(
            {
                "library": lib,
                "version": rs[0]["version"],
                "model": model,
                "variant": rs[0].get("variant"),
                "parts": [r["part"] for r in rs],
                "metrics": {k: statistics.mean(r["metrics"][k] for r in rs) for k in keys},
                "fit_seconds": statistics.median(r["fit_seconds"] for r in rs),
                "peak_mb": max(r["peak_mb"] for r in rs),
            }
        )
    return out


def _best(rows: list[dict[str, Any]], key: str, higher: bool) -> dict[str, Any] | None:
    rows = [r for r in rows if key in r["metrics"]]
    if not rows:
        return None
    return (max if higher else min)(rows, key=lambda r: r["metrics"][key])


def targets(summary: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(target, verdict, evidence) for the targets of the peer comparison."""
    out: list[tuple[str, str, str]] = []
    for proto, rows in sorted(summary.items()):
        key, higher, _ = METRIC[proto]
        mine = _best([r for r in rows if r["library"] == "recfit"], key, higher)
        peer = _best([r for r in rows if r["library"] != "recfit"], key, higher)
        if mine is None or peer is None:
            continue
        a, b = mine["metrics"][key], peer["metrics"][key]
        ok = a >= b if higher else a <= b
        out.append((
            f"{proto}: recfit's best at least as good as the best peer ({key})",
            "met" if ok else "not met",
            f"recfit {mine['variant']} {a:.4f} vs {peer['library']} {peer['model']} {b:.4f}",
        ))  # fmt: skip

    def speed(proto: str, lib: str, peer_model: str, factor: float) -> None:
        key = METRIC[proto][0]
        rows = summary.get(proto, [])
        peer = next((r for r in rows if r["library"] == lib and r["model"] == peer_model), None)
        if peer is None:
            out.append((f"{proto}: recfit >= {factor:g}x faster than {lib} {peer_model}",
                        "not measured", "peer run missing"))  # fmt: skip
            return
        good = [r for r in rows if r["library"] == "recfit"
                and r["metrics"][key] <= peer["metrics"][key]]  # fmt: skip
        if not good:
            out.append((f"{proto}: recfit >= {factor:g}x faster than {lib} at equal or better "
                        f"{key}", "not met", "no recfit configuration matched the metric"))  # fmt: skip
            return
        fastest = min(good, key=lambda r: r["fit_seconds"])
        ratio = peer["fit_seconds"] / fastest["fit_seconds"]
        out.append((
            f"{proto}: recfit >= {factor:g}x faster than {lib} {peer_model} at equal or better {key}",
            "met" if ratio >= factor else "not met",
            f"recfit {fastest['variant']} {fastest['fit_seconds']:.2f} s ({key} "
            f"{fastest['metrics'][key]:.4f}) vs {peer['fit_seconds']:.2f} s "
            f"({peer['metrics'][key]:.4f}): {ratio:.1f}x",
        ))  # fmt: skip

    speed("R1", "fastai", "EmbeddingDotBias (50)", 10)
    speed("R5", "surprise", "SVD", 5)
    return out


def _cell(m: dict[str, float], key: str) -> str:
    """``m[key]`` with its 95 % interval when the run gave one (``<key>_lo``/``_hi``)."""
    v = f"{m.get(key, float('nan')):.4f}"
    if f"{key}_lo" in m and f"{key}_hi" in m:
        v += f" [{m[f'{key}_lo']:.4f}, {m[f'{key}_hi']:.4f}]"
    return v


def markdown(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "## recfit against its peers (`make bench-peers`)",
        "",
        f"Run {report['started']} on {report['cpus']} CPUs, mode "
        f"{'quick (first seed / fold)' if report['quick'] else 'full'}, "
        f"{report['threads']} thread(s) per library, load average "
        f"{report['load_before'][0]:.2f} before and {report['load_after'][0]:.2f} after "
        f"(the machine was shared: times are rough); wall time {report['wall_seconds']:.0f} s.",
        "Same rows for every library (`benchmarks/results/splits`); fit time only (no "
        'loading or scoring); metrics are means and fit times medians over the parts run. "recfit fit time" says '
        "how many times faster or slower recfit's fit is than the peer's; difference = "
        "recfit − peer in the protocol's metric.",
        "",
    ]
    for proto in PROTOCOL_ORDER:
        rows = summary.get(proto, [])
        key, higher, label = METRIC[proto]
        not_run = [n for n in report["not_run"] if n["protocol"] == proto]
        if not rows and not not_run:
            continue
        lines += [f"### {proto}: {label} ({'higher' if higher else 'lower'} is better)", ""]
        mine = _best([r for r in rows if r["library"] == "recfit"], key, higher)
        extra = EXTRA.get(proto, ())
        head = ["library", "model", "parts", label, *extra, "fit s", "peak MB",
                "recfit fit time", f"recfit − peer ({key})"]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        order = sorted(rows, key=lambda r: (r["library"] != "recfit", r["library"], r["model"]))
        for r in order:
            m = r["metrics"]
            if mine is not None and r["library"] != "recfit":
                # a baseline's "fit" is a count, and S-T's metric is itself a time
                ratio = (
                    "—" if r["library"] == "baseline" or proto == "S-T"
                    else speedup(r["fit_seconds"], mine["fit_seconds"])
                )  # fmt: skip
                diff = f"{mine['metrics'][key] - m[key]:+.4f}"
            else:
                ratio = diff = "—"
            cells = [
                f"{r['library']} {r['version']}", r["model"], str(len(r["parts"])),
                _cell(m, key), *[_cell(m, e) for e in extra],
                f"{r['fit_seconds']:.2f}", f"{r['peak_mb']:.0f}", ratio, diff,
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        for n in not_run:
            cells = [n["library"], n["model"] or "all", "—", f"not run: {n['reason']}"]
            lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
        if mine is not None:
            lines += ["", f"Ratios and differences use recfit's best row: {mine['model']}."]
        for mine_variant, peer_model in PAIRS.get(proto, ()):
            a = next(
                (r for r in rows if r["library"] == "recfit" and r["variant"] == mine_variant), None
            )
            b = next(
                (r for r in rows if r["library"] != "recfit" and r["model"] == peer_model), None
            )
            if a is not None and b is not None:
                lines.append(
                    f"Same configuration: recfit {mine_variant} against {b['library']} "
                    f"{peer_model}: {speedup(b['fit_seconds'], a['fit_seconds'])}, "
                    f"{key} {a['metrics'][key] - b['metrics'][key]:+.4f}."
                )
        lines.append("")
    lines += ["### Targets", "", "| target | verdict | evidence |", "|---|---|---|"]
    for t, v, e in report["targets"]:
        lines.append(f"| {t} | {v} | {e} |")
    lines.append("")
    return "\n".join(lines)


def chart(summary: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    protos = [p for p in PROTOCOL_ORDER if p in summary]
    if not protos:
        return
    fig, axes = plt.subplots(2, len(protos), figsize=(3.4 * len(protos), 7), squeeze=False)
    for c, proto in enumerate(protos):
        key, higher, label = METRIC[proto]
        rows = sorted(summary[proto], key=lambda r: (r["library"] != "recfit", r["model"]))
        names: list[str] = []
        for r in rows:
            tag = r["variant"] if r["library"] == "recfit" or r.get("variant") else r["model"]
            name = f"{r['library']}\n{str(tag)[:24]}"
            while name in names:  # bars with one label would be drawn on top of each other
                name += "'"
            names.append(name)
        colors = ["tab:blue" if r["library"] == "recfit" else "tab:gray" for r in rows]
        vals = [r["metrics"][key] for r in rows]
        ax = axes[0][c]
        ax.barh(names, vals, color=colors)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=6)
        lo = min(vals)
        ax.set_xlim(lo * 0.95 if not higher else 0, max(vals) * 1.08)
        ax.set_title(f"{proto}: {label}\n({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.tick_params(labelsize=6)
        ax2 = axes[1][c]
        secs = [max(r["fit_seconds"], 0.01) for r in rows]
        ax2.barh(names, secs, color=colors)
        for y, v in enumerate(secs):
            ax2.text(v, y, f" {v:.2g}s", va="center", fontsize=6)
        ax2.set_xscale("log")
        ax2.set_xlim(0.01, max(secs) * 8)
        ax2.xaxis.set_minor_formatter(NullFormatter())
        ax2.set_title(f"{proto}: fit seconds (log)", fontsize=9)
        ax2.tick_params(labelsize=6)
    fig.suptitle("recfit (blue) against its peers: same rows, same machine", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BENCHMARKS_MD = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
BEGIN, END = "<!-- peers:begin (written by benchmarks/peers/run.py) -->", "<!-- peers:end -->"


def update_benchmarks_md(table: str, path: Path = BENCHMARKS_MD) -> bool:
    """Replace the text between the peer markers in BENCHMARKS.md with ``table``."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN not in text or END not in text:
        print(
            f"{path}: no peer markers; table left in benchmarks/results/peers.md", file=sys.stderr
        )
        return False
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{table.strip()}\n{END}{tail}", encoding="utf-8")
    return True


def write_report(report: dict[str, Any], stem: Path = RESULTS / "peers") -> None:
    report["summary"] = summarize(report["records"])
    report["targets"] = targets(report["summary"])
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    if stem == RESULTS / "peers" and not report["quick"]:
        update_benchmarks_md(markdown(report))
    try:
        chart(report["summary"], stem.with_suffix(".png"))
    except ImportError as exc:
        print(f"no chart: {exc}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="protocols, comma-separated (R1,R2,R3,R5,T1,T2,S-T)")
    ap.add_argument("--libs", default="", help="libraries, comma-separated")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per job")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument(
        "--out", default=str(RESULTS / "peers"),
        help="stem of the .json/.md/.png written (a partial run: e.g. benchmarks/results/tmp/t2)",
    )  # fmt: skip
    ap.add_argument(
        "--json", default=str(RESULTS / "peers.json"), help="--report-only's input (and stem)"
    )
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        path = Path(args.json)
        write_report(json.loads(path.read_text()), path.with_suffix(""))
        print(path.with_suffix(".md").read_text())
        return 0
    split_py = python_for(Job("recfit", "R1", None, "", ""))
    subprocess.run([str(split_py), str(HERE / "splits.py")], check=True, cwd=ROOT)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    only = {p for p in args.only.split(",") if p}
    libs = {p for p in args.libs.split(",") if p}
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "threads": int(os.environ.get("BENCH_THREADS", "1")),
        "load_before": list(os.getloadavg()),
        "records": [],
        "not_run": [],
        "jobs": [],
    }
    t0 = time.perf_counter()
    for job in jobs():
        if (only and job.protocol not in only) or (libs and job.library not in libs):
            continue
        base = {"library": job.library, "protocol": job.protocol, "model": job.model}
        reason = job.skip or unavailable(job)
        if reason is None and args.quick and not job.quick:
            reason = "not in --quick mode"
        if reason is not None:
            report["not_run"].append({**base, "reason": reason})
            print(f"-- not run: {job.name()}: {reason}", flush=True)
            continue
        t1 = time.perf_counter()
        print(f"-- {job.name()} ...", end=" ", flush=True)
        recs, err = run_job(job, args.quick, args.timeout)
        wall = time.perf_counter() - t1
        report["records"].extend(recs)
        report["jobs"].append({**base, "wall_seconds": wall, "error": err})
        if err:
            report["not_run"].append({**base, "reason": err})
        key = METRIC[job.protocol][0]
        vals = ", ".join(f"{r['metrics'][key]:.4f}/{r['fit_seconds']:.1f}s" for r in recs)
        print(f"{wall:.0f} s wall; {key}/fit: {vals}" + (f"; {err}" if err else ""), flush=True)
        report["wall_seconds"] = time.perf_counter() - t0
        report["load_after"] = list(os.getloadavg())
        write_report(report, stem)  # keep partial results
    report["wall_seconds"] = time.perf_counter() - t0
    report["load_after"] = list(os.getloadavg())
    write_report(report, stem)
    print(f"\nwrote {stem}.json, .md, .png in {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
