"""A self-contained ``report.html`` for a run directory.

The report shows, in one HTML file with no external resources (images are embedded as
base64 ``data:`` URIs, the style is inline, there is no script):

* the run's configuration (``config.json``);
* its metrics (``metrics.json``) next to the published reference of the run's
  evaluation protocol (see :func:`reference_for`; numbers are only comparable within
  one protocol, so a run on another dataset or split says "no published reference");
* the data and split summary, and the per-epoch history (``history.csv``);
* loss and schedule curves (``losses.png``, ``schedule.png``), the LR-finder plot when
  one was run (``lr_find.png``), the confusion matrix for classifiers
  (``confusion_matrix.png``) and any other figure in the folder;
* sample recommendations and similar items with titles, from the run's bundle.

Example:
    >>> ref = reference_for("ml-100k", "random:0.2", model="dot")
    >>> ref.protocol, [v.value for v in ref.values if v.metric == "mse"][:2]
    ('R1', [0.8115, 0.829])
    >>> reference_for("ml-100k", "temporal:0.2") is None
    True
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from recfit._fs import atomic_write, read_plain_file
from recfit._version import __version__
from recfit.errors import BundleError, RecfitError, UnknownMetricError
from recfit.metrics.registry import metric_info
from recfit.models import OUTPUT_TITLES
from recfit.recommender import Recommender
from recfit.recommender.bundle import MANIFEST

__all__ = [
    "REFERENCES",
    "Reference",
    "ReferenceValue",
    "build_report",
    "reference_for",
    "render_report",
]

_FIGURES = (
    ("losses.png", "Loss curves", "Training and validation loss per epoch"),
    ("schedule.png", "Learning-rate schedule", "Learning rate (and momentum) per step"),
)
_LR_FIND = "lr_find.png"
_CONFUSION = "confusion_matrix.png"
_MAX_FILE_BYTES = 1 << 30  # a run file read whole into the report


@dataclass(frozen=True)
class ReferenceValue:
    """One published number.

    Attributes:
        metric: the metric's name as recfit reports it (``mse``, ``rmse``, ``accuracy``).
        value: the published value.
        source: who measured it, how.
        models: the recfit model families it compares to (empty: any).
    """

    metric: str
    value: float
    source: str
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reference:
    """The published reference numbers of one evaluation protocol.

    Attributes:
        protocol: the protocol's id in docs/protocols.md (``R1``...).
        description: data and split.
        values: the published numbers.
        note: a caveat on comparing a run with them.
    """

    protocol: str
    description: str
    values: tuple[ReferenceValue, ...]
    note: str = ""


def _load_references() -> tuple[tuple[str, str, float | None, Reference], ...]:
    """The published numbers shipped in ``references.json`` (data, not code)."""
    text = resources.files("recfit").joinpath("references.json").read_text(encoding="utf-8")
    return tuple(
        (
            r["dataset"],
            r["split"],
            None if r["param"] is None else float(r["param"]),
            Reference(
                r["protocol"],
                r["description"],
                tuple(
                    ReferenceValue(v["metric"], float(v["value"]), v["source"], tuple(v["models"]))
                    for v in r["values"]
                ),
                r["note"],
            ),
        )
        for r in json.loads(text)["references"]
    )


REFERENCES = _load_references()
"""(dataset, split kind, split parameter or None, reference), looked up by
:func:`reference_for`."""


def _split_key(split: str) -> tuple[str, float | None]:
    parts = str(split).strip().lower().split(":")
    kind = parts[0]
    if len(parts) < 2:
        return kind, None
    try:
        return kind, float(parts[1])
    except ValueError:
        return kind, None


def reference_for(dataset: str, split: str, model: str | None = None) -> Reference | None:
    """The published reference for a dataset and split, or ``None`` when there is none.

    Args:
        dataset: a MovieLens name (``ml-100k``) or a path ending in one.
        split: a split spec (``random:0.2``, ``u1``, ``kfold:5:0``...).
        model: keep only the numbers comparable with this model family (``dot``,
            ``mf``, ``nn``; ``cls`` for rating classifiers); ``None`` keeps all.

    Example:
        >>> [v.value for v in reference_for("ml-1m", "random:0.1").values][:2]
        [0.845, 0.831]
    """
    name = Path(str(dataset)).name.lower()
    kind, param = _split_key(split)
    for ds, k, p, ref in REFERENCES:
        if ds != name or k != kind:
            continue
        if p is not None and (param is None or not math.isclose(p, param)):
            continue
        if model is None:
            return ref
        vals = tuple(v for v in ref.values if not v.models or model in v.models)
        return Reference(ref.protocol, ref.description, vals, ref.note) if vals else None
    return None


# ---------------------------------------------------------------------- reading
def _run_file(run: Path, name: str) -> bytes | None:
    """The bytes of ``run/name`` (None when nothing is there): only a plain file inside
    the run folder is read; a symbolic link, folder or pipe in its place is a BundleError."""
    if not os.path.lexists(run / name):
        return None
    return read_plain_file(run, name, max_bytes=_MAX_FILE_BYTES)


def _read_json(run: Path, name: str) -> Any:
    data = _run_file(run, name)
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"expected valid JSON in {str(run / name)!r}, received: {exc}") from exc


def _read_history(run: Path, name: str, limit: int = 200) -> tuple[list[str], list[list[str]]]:
    data = _run_file(run, name)
    if data is None:
        return [], []
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BundleError(f"expected a CSV table in {str(run / name)!r}, received: {exc}") from exc
    if not rows:
        return [], []
    return rows[0], rows[1 : limit + 1]


def _data_uri(run: Path, name: str) -> str:
    return "data:image/png;base64," + base64.b64encode(_run_file(run, name) or b"").decode("ascii")


# ---------------------------------------------------------------------- rendering
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v) if v else "—"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def _plain(v: Any) -> str:
    """A config value as written (no rounding): 0.005 stays 0.005."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return "(" + ", ".join(_plain(x) for x in v) + ")"
    return str(v)


def _table(header: list[str], rows: list[list[Any]], caption: str | None = None) -> str:
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(c) if not isinstance(c, str) else c)}</td>" for c in r)
        + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(run: Path, name: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{_data_uri(run, name)}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)} ({_e(name)})</figcaption></figure>"
    )


def _with_direction(name: str) -> str:
    """``name ↓`` / ``name ↑`` (lower / higher is better, from recfit.metrics.registry)."""
    try:
        return f"{name} {metric_info(name).arrow}"
    except UnknownMetricError:
        return name


def _metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for k, v in metrics.items():
        if k == "details" or not isinstance(v, int | float) or isinstance(v, bool):
            continue
        shown = f"{v:.2f} s" if k.endswith("seconds") else _fmt(float(v))
        rows.append([_with_direction(k), shown])
    return rows


def _reference_html(ref: Reference | None, metrics: dict[str, Any], what: str) -> str:
    if ref is None:
        return (
            f"<p class=note>No published reference for {_e(what)}: numbers are only "
            "comparable within one protocol (see docs/protocols.md for those with published "
            "results).</p>"
        )
    rows = []
    for v in ref.values:
        run = metrics.get(v.metric)
        ours = _fmt(float(run)) if isinstance(run, int | float) else "—"
        diff = f"{float(run) - v.value:+.4f}" if isinstance(run, int | float) else "—"
        rows.append([v.source, v.metric, f"{v.value:g}", ours, diff])
    note = f"<p class=note>{_e(ref.note)}</p>" if ref.note else ""
    return (
        f"<p>Protocol <strong>{_e(ref.protocol)}</strong>: {_e(ref.description)}.</p>"
        + _table(["published by", "metric", "reference", "this run", "difference"], rows)
        + note
    )


def _samples_html(run: Path, n_users: int, n: int) -> str:
    if not ((run / MANIFEST).is_file() or (run / "bundle" / MANIFEST).is_file()):
        return "<p class=note>No bundle in this run directory, so no sample recommendations.</p>"
    try:
        rec = Recommender.load(run)
        trained = (rec.seen.lengths() > 0).nonzero()[0][:n_users]
        parts = []
        if len(trained):
            res = rec.recommend(rec.users.id(trained).tolist(), n=n, exclude_seen=True)
            for r in res:
                seen = len(rec.seen_items(r.user))
                rows = [[k, str(s.id), s.title or "—", s.score] for k, s in enumerate(r.items, 1)]
                parts.append(
                    f"<h3>User {_e(r.user)}</h3>"
                    + _table(
                        ["#", "item", "title", OUTPUT_TITLES[rec.output_kind]],
                        rows,
                        f"top {n} of user {r.user} ({r.path}; their {seen} training items "
                        "excluded)",
                    )
                )
        if rec.adapter.supports_similarity and rec.n_items:
            top = int(rec.popularity.argmax())
            item = rec.items.id([top]).tolist()[0]
            sim = rec.similar_items([item], n=n)[0]
            label = f"{sim.title} (id {sim.query})" if sim.title else f"item {sim.query}"
            rows = [
                [k, str(s.id), s.title or "—", s.score] for k, s in enumerate(sim.neighbours, 1)
            ]
            parts.append(
                f"<h3>Most similar to {_e(label)}</h3>"
                + _table(["#", "item", "title", "cosine"], rows, "the most-rated item's neighbours")
            )
        return "".join(parts) or "<p class=note>The bundle has no trained users.</p>"
    except RecfitError as exc:
        return f"<p class=note>The bundle could not answer: {_e(exc)}</p>"


_CSS = """
:root{--text:#1c1e21;--muted:#5b616b;--border:#d6dae0;--bg:#fff;--head:#f2f4f7}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:var(--text);
background:var(--bg);max-width:60rem;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin-bottom:.25rem}h2{font-size:1.25rem;margin-top:2rem;
border-bottom:1px solid var(--border);padding-bottom:.25rem}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}
caption{text-align:left;color:var(--muted);padding:.25rem 0}
th,td{border:1px solid var(--border);padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:var(--head)}td:not(:first-child){font-variant-numeric:tabular-nums}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid var(--border)}
figcaption,.note,.meta{color:var(--muted)}nav ul{padding-left:1.2rem}
.scroll{overflow-x:auto}
"""


def render_report(run_dir: str | Path, *, n_users: int = 3, n: int = 10) -> str:
    """The report of ``run_dir`` as an HTML string (see :func:`build_report`)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise BundleError(f"expected a run directory, received {str(run)!r}")
    config = _read_json(run, "config.json")
    metrics_doc = _read_json(run, "metrics.json")
    if config is None and metrics_doc is None and not (run / "bundle").is_dir():
        raise BundleError(
            "expected a run directory with config.json, metrics.json or bundle/, "
            f"received {str(run)!r}"
        )
    config = config if isinstance(config, dict) else {}
    metrics = metrics_doc if isinstance(metrics_doc, dict) else {}
    raw_details = metrics.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    # what the run measured on (metrics.json) wins over what the config asked for: a run
    # trained on in-memory data keeps the config's default dataset name
    measured_data = (details.get("data") or {}).get("name")
    measured_split = (details.get("split") or {}).get("split")
    dataset = str(measured_data or config.get("dataset", "unknown"))
    split = str(measured_split or config.get("split", "unknown"))
    model = str(config.get("model", "unknown"))
    task = str(config.get("task", "rating"))
    family = "cls" if "class" in task else model

    sections: list[tuple[str, str, str]] = []  # (id, heading, body)
    cfg_rows = [[k, _plain(v)] for k, v in config.items()]
    sections.append(
        (
            "configuration",
            "Configuration",
            _table(["setting", "value"], cfg_rows)
            if cfg_rows
            else "<p class=note>No config.json in this run directory.</p>",
        )
    )
    m_rows = _metric_rows(metrics)
    sections.append(
        (
            "metrics",
            "Metrics",
            (
                _table(["metric", "value"], m_rows, f"measured on the held-out part of {split}")
                if m_rows
                else "<p class=note>No metrics.json in this run directory.</p>"
            )
            + "<h3>Published reference</h3>"
            + _reference_html(
                reference_for(dataset, split, family), metrics, f"{dataset} with split {split}"
            ),
        )
    )
    data_parts = []
    for key, title in (("data", "Data"), ("split", "Split"), ("early_stopping", "Early stopping")):
        block = details.get(key)
        if isinstance(block, dict) and block:
            data_parts.append(
                _table(["", title.lower()], [[k, v] for k, v in block.items()], title)
            )
    header, hist = _read_history(run, "history.csv")
    if header:
        data_parts.append(
            '<div class="scroll">'
            + _table(header, [[c for c in r] for r in hist], "history.csv: one row per epoch")
            + "</div>"
        )
    if data_parts:
        sections.append(("data", "Data, split and history", "".join(data_parts)))
    figs = [_figure(run, f, t, c) for f, t, c in _FIGURES if os.path.lexists(run / f)]
    sections.append(
        (
            "curves",
            "Training curves",
            "".join(figs) or "<p class=note>No loss or schedule plots in this run directory.</p>",
        )
    )
    if os.path.lexists(run / _LR_FIND):
        sections.append(
            (
                "lr-find",
                "Learning-rate finder",
                _figure(run, _LR_FIND, "LR finder: loss against learning rate", "LR range test"),
            )
        )
    if os.path.lexists(run / _CONFUSION):
        sections.append(
            (
                "confusion",
                "Confusion matrix",
                _figure(
                    run,
                    _CONFUSION,
                    "Confusion matrix: true ratings as rows, predicted as columns",
                    "Confusion matrix of the classifier on the held-out part",
                ),
            )
        )
    known = {f for f, _, _ in _FIGURES} | {_LR_FIND, _CONFUSION}
    others = sorted(
        p for p in run.glob("*.png") if p.name not in known and (p.is_symlink() or p.is_file())
    )
    if others:
        sections.append(
            (
                "figures",
                "Other figures",
                "".join(_figure(run, p.name, p.stem.replace("_", " "), p.stem) for p in others),
            )
        )
    sections.append(("samples", "Sample recommendations", _samples_html(run, n_users, n)))

    toc = "".join(f'<li><a href="#{sid}">{_e(h)}</a></li>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{b}</section>' for sid, h, b in sections)
    headline = f"{model} on {dataset}"
    when = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>recfit report: {_e(headline)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>recfit run report: {_e(headline)}</h1>"
        f'<p class="meta">split {_e(split)} · run directory {_e(run.resolve().name)} · '
        f"written {_e(when)} by recfit {_e(__version__)}</p>"
        f'<nav aria-label="Sections"><ul>{toc}</ul></nav></header>'
        f"<main>{body}</main></body></html>\n"
    )


def build_report(
    run_dir: str | Path, *, out: str | Path | None = None, n_users: int = 3, n: int = 10
) -> Path:
    """Write a self-contained ``report.html`` for a run directory.

    Args:
        run_dir: a run directory written by ``recfit train`` (``config.json``,
            ``metrics.json``, ``history.csv``, figures, ``bundle/``); missing parts are
            left out of the report with a note.
        out: where to write (default ``run_dir/report.html``).
        n_users: how many users get sample recommendations (the first trained users).
        n: length of each sample list.

    Returns:
        The path of the report (written to a temporary file and renamed into place).

    Raises:
        BundleError: ``run_dir`` is not a run directory, or a JSON file in it is damaged.

    Example:
        >>> import tempfile, json
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "config.json").write_text(json.dumps({"dataset": "ml-100k",
        ...      "split": "random:0.2", "model": "dot"}))
        >>> _ = (d / "metrics.json").write_text(json.dumps({"mse": 0.84}))
        >>> text = build_report(d).read_text()
        >>> "0.8115" in text and "<h2>Metrics</h2>" in text
        True
    """
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write(path, render_report(run_dir, n_users=n_users, n=n))
    return path
