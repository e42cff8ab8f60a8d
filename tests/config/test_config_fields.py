"""Every field of every task's config reaches the code of the runs it applies to, or is
refused.

For each task's class and each of its fields, where it applies (``applies``), changing it
from its default must change something observable in the run: the model, its weights,
the Learner's settings, its callbacks, the history, the metrics or the report. Where it
does not apply, setting it is a ConfigError. ``patience`` was read only on the rating
path before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import pytest
import torch

from recfit.config import TASK_CONFIGS, validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError, RecfitError
from recfit.runs import RunResult, train_run

#: Fields read before training (data loading) or by the hardware, not by a task's code:
#: covered where they are read.
EXEMPT = {
    "version": "the config format version",
    "dataset": "read by load_dataset (tests/data, tests/cli/test_cli_train.py)",
    "data_dir": "read by load_dataset (tests/data)",
    "user_col": "read by load_dataset (tests/test_runs.py renames columns)",
    "item_col": "read by load_dataset (tests/test_runs.py renames columns)",
    "rating_col": "read by load_dataset (tests/test_runs.py renames columns)",
    "timestamp_col": "read by load_dataset (tests/data/test_io.py)",
    "weight_col": "read by load_dataset (tests/data/test_io.py)",
    "test_file": "read by load_split instead of splitting (tests/test_run_dirs.py)",
    "device": "every value trains on the CPU of a machine without CUDA",
}

#: (task, field): why a field of one task has no value that changes its runs
TASK_EXEMPT = {
    ("classification", "opt"): "auto is adam there (one optimiser; a resolved config says it)",
}

#: top-N fields that no top-N family reads: refused (test_topn_refuses_what_nothing_reads)
TOPN_NEVER_READ = ("wd", "schedule", "patience", "inner_valid", "monitor")
TASK_EXEMPT.update({("topn", f): "never read by a top-N run: refused" for f in TOPN_NEVER_READ})

#: a top-N family setting: a value that changes the run of a family that reads it
TOPN_FAMILY_VALUES: dict[str, Any] = {
    "ease_lambda": 50.0, "ease_dropout": 0.0, "user_exponent": 0.0,
    "popularity_exponent": 0.5, "knn_k": 3, "shrinkage": 5.0, "n_factors": 3, "alpha": 5.0,
    "unobserved_weight": 0.5, "epochs": 2, "lr": 0.1, "reg": 0.3, "bs": 16, "opt": "adam",
}  # fmt: skip


def _topn_changes() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """A family setting changes the run of a family that reads it; one that no
    registered family reads is refused (test_topn_refuses_what_nothing_reads)."""
    from recfit.models.registry import families

    out = []
    for name, value in TOPN_FAMILY_VALUES.items():
        readers = [f.name for f in families("topn") if name in f.reads]
        if readers:
            out.append(("topn", name, value, {"model": readers[0]}))
        else:
            TASK_EXEMPT[("topn", name)] = "no registered top-N family reads it: refused"
    return out


def _single_valued(task: str, field: str) -> bool:
    """A field with one possible value for the task (nothing to change): the task itself,
    its only model family or trainer, a Literal of one value."""
    cls = TASK_CONFIGS[task]
    if field == "task":
        return True  # the discriminator: another value is another class (rating -> classification below)
    if field in ("model", "trainer"):
        cfg = cls()
        if field == "model":
            return len(cfg.model_choices()) == 1
        return len({t for f in cfg.candidate_families() for t in f.trainers}) == 1
    ann = cls.model_fields[field].annotation
    return get_origin(ann) is Literal and len(get_args(ann)) == 1


BASE: dict[str, dict[str, Any]] = {
    "rating": {"epochs": 2, "bs": 32, "n_factors": 4, "budget": 0},  # auto by size, no search
    "classification": {"task": "classification", "epochs": 2, "bs": 32, "n_factors": 4,
                       "layers": (8,)},
    "retrieval": {"task": "retrieval", "epochs": 2, "bs": 64, "n_factors": 4, "layers": (4,)},
    "topn": {"task": "topn", "model": "popularity", "n_bootstrap": 20},
}  # fmt: skip

#: (task, field, new value, extra settings that make the field apply)
CHANGES: list[tuple[str, str, Any, dict[str, Any]]] = [
    *[
        (task, f, v, {})
        for task in ("rating", "classification", "retrieval")
        for f, v in (
            ("seed", 7),
            ("split", "random:0.3"),
            ("epochs", 1),
            ("lr", 0.02),
            ("bs", 16),
            ("wd", 0.2),
            ("reg", 0.3),
            ("patience", 1),
        )
    ],
    ("rating", "task", "classification", {}),
    ("rating", "model", "mf", {}),
    ("rating", "n_factors", 6, {}),
    ("rating", "y_range", (1.0, 5.0), {}),
    ("rating", "layers", (6,), {"model": "nn", "n_factors": 50}),
    ("rating", "dropout", 0.3, {"model": "nn", "n_factors": 50}),
    ("rating", "batch_norm", False, {"model": "nn", "n_factors": 50}),
    ("rating", "loss", "huber", {}),
    ("rating", "opt", "sgd", {}),
    ("rating", "schedule", "cosine", {}),
    ("rating", "trainer", "als", {"model": "mf", "bs": 0}),
    ("rating", "reg_exponent", 0.5, {"model": "mf", "trainer": "als", "bs": 0}),
    ("rating", "pct_start", 0.5, {}),
    ("rating", "monitor", "rmse", {"patience": 1}),
    ("rating", "inner_valid", 0.3, {"patience": 1}),
    ("rating", "checkpoint_every", 3, {}),
    ("rating", "bf16", True, {}),
    ("rating", "budget", 5.0, {}),
    ("rating", "blend_members", ("baseline", "dot"),
     {"model": "blend", "epochs": 5, "bs": 0, "n_factors": 50}),  # the blend reads none
    ("rating", "time_bins", 4, {"model": "timesvdpp", "bs": 0}),
    ("rating", "time_reg", 0.9, {"model": "timesvdpp", "bs": 0}),
    ("rating", "gibbs_samples", 3, {"model": "bmf", "epochs": 5, "bs": 0, "gibbs_burn_in": 1}),
    ("rating", "gibbs_burn_in", 2, {"model": "bmf", "epochs": 5, "bs": 0, "gibbs_samples": 3}),
    ("rating", "autorec_hidden", 4, {"model": "autorec", "bs": 0, "n_factors": 50}),
    ("classification", "n_factors", 6, {}),
    ("classification", "layers", (6,), {}),
    ("classification", "dropout", 0.3, {}),
    ("classification", "batch_norm", False, {}),
    ("classification", "head", "ordinal", {}),
    ("classification", "decode", "argmax", {}),
    ("classification", "biases", False, {}),
    ("classification", "model", "ordrec", {"layers": None}),
    ("classification", "implicit", False, {"model": "ordrec", "layers": None}),
    ("classification", "user_thresholds", False, {"model": "ordrec", "layers": None}),
    ("classification", "imbalance", "oversample", {}),
    ("classification", "class_weight", "sqrt_inverse", {"imbalance": "class_weights"}),
    ("classification", "smote_epochs", 1, {"imbalance": "smote"}),
    ("classification", "smote_k", 2, {"imbalance": "smote"}),
    ("classification", "pct_start", 0.5, {}),
    ("classification", "monitor", "accuracy", {"patience": 1}),
    ("classification", "inner_valid", 0.3, {"patience": 1}),
    ("retrieval", "n_factors", 6, {}),
    ("retrieval", "layers", (6,), {}),
    ("retrieval", "objective", "mse", {}),
    ("retrieval", "temperature", 0.5, {}),
    ("retrieval", "logq", False, {}),
    ("retrieval", "num_hard_negatives", 2, {}),
    ("retrieval", "num_negatives", 5, {}),
    ("retrieval", "positive_min_rating", 3.0, {}),
    ("retrieval", "relevant_min_rating", 4.0, {}),
    ("retrieval", "exclude_seen", True, {}),
    ("retrieval", "eval_every", 1, {}),
    ("retrieval", "opt", "adam", {}),
    ("retrieval", "schedule", "one_cycle", {}),
    ("retrieval", "monitor", "recall@20", {"eval_every": 1}),
    ("retrieval", "inner_valid", 0.3, {"patience": 1, "eval_every": 1}),
    ("retrieval", "user_features", (), {}),
    ("retrieval", "item_features", (), {}),
    ("retrieval", "use_ids", False, {}),
    ("retrieval", "remove_accidental_hits", False, {}),
    ("retrieval", "negative_sampling", "popularity", {"num_negatives": 5}),
    ("retrieval", "popularity_alpha", 0.2,
     {"num_negatives": 5, "negative_sampling": "popularity"}),
    ("retrieval", "eval_ks", (5, 10), {}),
    ("retrieval", "n_bootstrap", 20, {}),
    *[
        ("topn", f, v, {})
        for f, v in (
            ("seed", 7),
            ("split", "random:0.3"),
            ("model", "auto"),
            ("positive_min_rating", 3.0),
            ("confidence", "value"),
            ("eval_ks", (5, 10)),
            ("exclude_seen", False),
            ("n_bootstrap", 50),
        )
    ],
    *_topn_changes(),
]  # fmt: skip
# patience in retrieval watches the ranking metrics computed every eval_every epochs
CHANGES = [
    (t, f, v, {"eval_every": 1} if (t, f) == ("retrieval", "patience") else x)
    for t, f, v, x in CHANGES
]


def _data(features: bool = False) -> Interactions:
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 25
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    u, i = u[keep], i[keep]
    pu, qi = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    r = np.clip(np.round(3 + (pu[u] * qi[i]).sum(1)), 1, 5)
    d = Interactions.from_arrays(u, i, r, rating_scale=(1, 5))
    if not features:
        return d
    users = pd.DataFrame({"job": rng.integers(0, 3, d.n_users)})  # for the feature fields
    items = pd.DataFrame({"kind": rng.integers(0, 4, d.n_items)})
    return dataclasses.replace(d, user_features=users, item_features=items)


def _simple(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str | tuple | Path)


def _observe(res: RunResult) -> str:
    """Everything a run exposes, as one digest (wall-clock fields left out)."""
    learn = res.learner
    h = hashlib.sha256()
    parts: list[Any] = [
        type(learn.model).__name__, repr(learn.loss_func), learn.bs, learn.wd, learn.reg,
        learn.opt_name if isinstance(learn.opt_name, str) else "callable",
        type(learn.opt).__name__, learn.seed, learn.bf16, len(res.split.train),
        len(res.split.test), sorted(learn.model.state_dict()),
    ]  # fmt: skip
    for cb in learn.cbs:
        attrs = {k: v for k, v in vars(cb).items() if not k.startswith("_") and _simple(v)}
        parts.append((type(cb).__name__, sorted((k, repr(v)) for k, v in attrs.items())))
    for row in learn.history:
        parts.append(sorted((k, repr(v)) for k, v in row.items() if k != "time"))
    parts.append(sorted((k, repr(v)) for k, v in res.metrics.items() if "seconds" not in k))
    parts.append(sorted((k, repr(v)) for k, v in res.details.items() if "seconds" not in k))
    for name, fig in sorted(res.figures.items()):  # e.g. retrieval's metric_vs_epoch.png
        parts.append((name, [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes]))
    h.update(repr(parts).encode())
    for _, t in sorted(learn.model.state_dict().items()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _run(settings: dict[str, Any], tmp: Path, data: Interactions) -> str:
    cfg = validate_config({"device": "cpu", **settings})
    out = tmp / f"run{len(list(tmp.iterdir()))}" if "checkpoint_every" in settings else None
    return _observe(train_run(cfg, out, data=data, progress=False))


@pytest.mark.parametrize("task", list(TASK_CONFIGS))
def test_every_field_of_every_task_is_covered(task: str) -> None:
    fields = set(TASK_CONFIGS[task].model_fields)
    covered = {f for t, f, _, _ in CHANGES if t == task} | set(EXEMPT)
    covered |= {f for f in fields if _single_valued(task, f) or (task, f) in TASK_EXEMPT}
    assert covered == fields, fields ^ covered


@pytest.mark.parametrize(
    ("task", "field", "value", "extra"), CHANGES, ids=[f"{t}-{f}" for t, f, _, _ in CHANGES]
)
def test_a_changed_field_changes_the_run(
    task: str, field: str, value: Any, extra: dict[str, Any], tmp_path: Path
) -> None:
    data = _data(features=task == "retrieval")
    base = {k: v for k, v in {**BASE[task], **extra}.items() if v is not None}  # None: drop
    changed = {**base, field: value}
    if field == "task":  # another task's config has no budget
        changed.pop("budget", None)
    if field == "bf16" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"bf16|CUDA"):
            _run(changed, tmp_path, data)
        return
    if field == "checkpoint_every":
        base = {**base, "checkpoint_every": 1000}
    if field == "bf16":  # a GPU option: compared on the GPU
        base, changed = {**base, "device": "cuda"}, {**changed, "device": "cuda"}
    try:
        before = _run(base, tmp_path, data)
    except RecfitError as e:  # pragma: no cover - the base must train
        pytest.fail(f"base config failed: {e}")
    after = _run(changed, tmp_path, data)
    assert after != before, f"{field}={value!r} changed nothing observable for task {task}"


NOT_APPLYING: list[tuple[dict[str, Any], str, Any]] = [
    ({}, "temperature", 0.5),
    ({}, "exclude_seen", True),
    ({}, "eval_every", 2),
    ({}, "head", "ordinal"),
    ({}, "smote_k", 3),
    ({}, "reg_exponent", 0.5),
    ({"budget": 0}, "layers", (8,)),  # auto without a search: svdpp or dot
    ({"model": "nn"}, "n_factors", 8),
    ({"model": "mf"}, "y_range", (1.0, 5.0)),
    ({"trainer": "als", "model": "mf"}, "lr", 0.1),
    ({"schedule": "constant"}, "pct_start", 0.5),
    ({}, "monitor", "rmse"),
    ({}, "inner_valid", 0.2),
    ({"task": "retrieval"}, "inner_valid", 0.2),
    ({"task": "classification"}, "y_range", (1.0, 5.0)),
    ({"task": "classification"}, "class_weight", "sqrt_inverse"),
    ({"task": "classification"}, "opt", "sgd"),
    ({"task": "classification"}, "checkpoint_every", 10),
    ({"task": "retrieval"}, "dropout", 0.2),
    ({"task": "retrieval"}, "pct_start", 0.5),
    ({"task": "retrieval", "objective": "mse"}, "temperature", 0.5),
    ({"task": "retrieval"}, "bf16", True),
    ({"task": "retrieval"}, "negative_sampling", "popularity"),  # no sampled negatives
    ({"task": "retrieval", "num_negatives": 3}, "popularity_alpha", 0.5),
    ({"task": "retrieval", "objective": "mse"}, "remove_accidental_hits", False),
    ({"trainer": "als", "model": "mf"}, "schedule", "cosine"),
]


@pytest.mark.parametrize(("base", "field", "value"), NOT_APPLYING)
def test_a_field_that_does_not_apply_is_refused(
    base: dict[str, Any], field: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=field):
        validate_config({**base, field: value})
    if field != "opt":  # opt applies to classification only as 'auto' or 'adam'
        assert not validate_config(base).applies(field)


@pytest.mark.parametrize("field", [*TOPN_NEVER_READ, *TOPN_FAMILY_VALUES])
def test_topn_refuses_what_nothing_reads(field: str) -> None:
    """A top-N setting that the chosen family does not read is an error."""
    from recfit.models.registry import families

    value = TOPN_FAMILY_VALUES.get(field, {"wd": 0.3, "schedule": "constant", "patience": 2,
                                           "inner_valid": 0.3, "monitor": "recall@10"}.get(field))  # fmt: skip
    for fam in families("topn"):
        if field in fam.reads:
            continue
        with pytest.raises(ConfigError, match=field):
            validate_config({"task": "topn", "model": fam.name, field: value})


@pytest.mark.parametrize("task", list(BASE))
def test_the_observation_is_deterministic(task: str, tmp_path: Path) -> None:
    """Without this, any change would look like an effect."""
    data = _data()
    assert _run(BASE[task], tmp_path, data) == _run(BASE[task], tmp_path, data)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"patience": 2, "monitor": "recall@20"}, "ranking"),
        ({"task": "retrieval", "patience": 2, "monitor": "mse"}, "ranking"),
        ({"patience": 2, "monitor": "msee"}, "msee"),
    ],
)
def test_monitor_must_be_a_metric_of_the_task(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_config(settings)


def test_patience_stops_classification_and_retrieval() -> None:
    """patience used to be read on the rating path only."""
    data = _data()
    for task in ("classification", "retrieval"):
        extra = {"eval_every": 1} if task == "retrieval" else {}
        cfg = validate_config({**BASE[task], **extra, "epochs": 6, "patience": 1, "lr": 1e-9,
                               "device": "cpu"})  # fmt: skip
        res = train_run(cfg, data=data, progress=False)
        stops = [c for c in res.learner.cbs if type(c).__name__ == "EarlyStopping"]
        assert len(stops) == 1 and stops[0].monitor == cfg.monitor
        assert stops[0].stopped_epoch is not None or len(res.learner.history) < 6
        assert all(not math.isnan(r.get(cfg.monitor, 0.0)) for r in res.learner.history)


def test_retrieval_patience_needs_eval_every() -> None:
    with pytest.raises(ConfigError, match="eval_every"):
        validate_config({**BASE["retrieval"], "patience": 1, "device": "cpu"})
