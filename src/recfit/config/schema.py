"""The config schema as the command line sees it: one flag per field, with its kind,
choices, help and per-task defaults; parsing of flag text; ``recfit config show``.

Example:
    >>> spec = field_spec("layers")
    >>> spec.kind, spec.tasks, parse_flag("layers", "64,32")
    ('ints', ('rating', 'classification', 'retrieval'), (64, 32))
    >>> shown_default("epochs")
    '5 (ials: 15; autorec: 30; bpr: 100; svdpp: 6; ordrec: 8; timesvdpp: 30; retrieval: 30)'
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from recfit.config.base import ROW_WISE_DEFAULTS, BaseTrainConfig
from recfit.config.io import TASK_CONFIGS, to_toml, validate_config
from recfit.config.rating import BUDGET_RULE
from recfit.errors import ConfigError
from recfit.models.registry import TRAINERS, families

__all__ = [
    "FieldSpec",
    "field_spec",
    "field_specs",
    "parse_flag",
    "show_config",
    "shown_default",
]

Kind = Literal["bool", "int", "float", "str", "choice", "ints", "names", "range", "weights"]

NOT_FLAGS = frozenset({"version"})
"""Fields with no command-line flag (the format version is not a setting)."""


@dataclass(frozen=True)
class FieldSpec:
    """One config field as a command-line flag.

    Attributes:
        name: the field's name.
        tasks: the tasks whose config has it.
        kind: how its flag's text is read: ``bool``, ``int``, ``float``, ``str``,
            ``choice`` (one of ``choices``), ``ints`` (``64,32``), ``names`` (``a,b``;
            ``none``: all, empty: none), ``range`` (``LOW,HIGH`` or ``none``) or
            ``weights`` (one of ``choices`` or ``RATING=WEIGHT,...``).
        choices: the values a ``choice`` (or ``weights``) field takes.
        defaults: its default per task.
        help: its description.
    """

    name: str
    tasks: tuple[str, ...]
    kind: Kind
    choices: tuple[str, ...]
    defaults: Mapping[str, Any]
    help: str


def _strip(annotation: Any) -> tuple[Any, bool]:
    """``annotation`` without ``None`` and ``Annotated`` (and whether it allowed None)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(get_args(annotation))
        if len(args) == 1:
            return _strip(args[0])[0], nullable
        return Union[tuple(args)], nullable  # noqa: UP007 - built from a tuple
    return annotation, False


def _kind(annotation: Any) -> tuple[Kind, tuple[str, ...]]:
    a, _ = _strip(annotation)
    origin, args = get_origin(a), get_args(a)
    if origin is Literal:
        return "choice", tuple(str(x) for x in args)
    if origin in (Union, types.UnionType):  # a choice or a table (class_weight)
        lits = [x for x in args if get_origin(x) is Literal]
        return "weights", tuple(str(v) for lit in lits for v in get_args(lit))
    if origin is tuple:
        inner = [_strip(x)[0] for x in args if x is not Ellipsis]
        if len(args) == 2 and args[1] is Ellipsis:
            return ("ints" if inner[0] is int else "names"), ()
        return "range", ()
    if a is bool:
        return "bool", ()
    if a is int:
        return "int", ()
    if a is float:
        return "float", ()
    return "str", ()


@cache
def field_specs() -> tuple[FieldSpec, ...]:
    """Every config field of every task (the rating task's first), as flags."""
    names: list[str] = []
    for cls in TASK_CONFIGS.values():
        names += [n for n in cls.model_fields if n not in names and n not in NOT_FLAGS]
    return tuple(field_spec(n) for n in names)


@cache
def field_spec(name: str) -> FieldSpec:
    """The :class:`FieldSpec` of the config field ``name``.

    Raises:
        ConfigError: no task's config has that field.
    """
    owners = {t: c for t, c in TASK_CONFIGS.items() if name in c.model_fields}
    if not owners:
        raise ConfigError(f"expected a config field, received {name!r}")
    kind: Kind = "str"
    choices: list[str] = []
    help = ""
    for cls in owners.values():
        info = cls.model_fields[name]
        k, ch = _kind(info.annotation)
        kind = k
        choices += [c for c in ch if c not in choices]
        help = help or _one_line(info.description or "")
    if name == "model":
        kind = "choice"
        choices = ["auto", *(f.name for f in families())]
    elif name == "trainer":
        kind, choices = "choice", list(TRAINERS)
    elif name == "budget":  # seconds, or auto (by size): the config reads the text
        kind = "str"
    if not help:
        help = _one_line(BaseTrainConfig.model_fields[name].description or "")
    defaults = {t: c.model_fields[name].default for t, c in owners.items()}
    return FieldSpec(name, tuple(owners), kind, tuple(choices), defaults, help)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple | list):
        return ",".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def shown_default(name: str) -> str:
    """The default of config field ``name`` as ``--help`` shows it: the first task's,
    then what other tasks, model families or the row-wise optimiser bring instead, and
    the tasks it belongs to when not all.

    Example:
        >>> shown_default("temperature"), shown_default("bs")
        ('0.1 (retrieval only)', '0 (auto: from the number of ratings; classification: 256; retrieval: 1000)')
    """
    spec = field_spec(name)
    tasks = list(spec.defaults)
    first = spec.defaults[tasks[0]]
    text = "0 (auto: from the number of ratings)" if name == "bs" else _fmt(first)
    if name == "budget":
        text = f"auto ({BUDGET_RULE})"
    extra = [f"{f.name}: {_fmt(f.defaults[name])}" for f in families() if name in f.defaults]
    if name != "task":
        extra += [f"{t}: {_fmt(v)}" for t, v in spec.defaults.items() if v != first]
    if name in ROW_WISE_DEFAULTS:
        extra.append(f"row-wise adagrad: {_fmt(ROW_WISE_DEFAULTS[name])}")
    if len(tasks) < len(TASK_CONFIGS):
        extra.append(f"{' and '.join(tasks)} only")
    if name == "bs":
        return text[:-1] + "".join(f"; {e}" for e in extra) + ")"
    return text + (f" ({'; '.join(extra)})" if extra else "")


def parse_flag(name: str, text: str) -> Any:
    """The value of config field ``name`` from its flag's text (``int``, ``float``,
    ``bool`` and ``choice`` flags arrive typed; the others are read here).

    Raises:
        ConfigError: text that does not read as the field's kind, naming the flag.

    Example:
        >>> parse_flag("y_range", "1,5"), parse_flag("user_features", "none")
        ((1.0, 5.0), None)
        >>> parse_flag("class_weight", "1=2,5=0.5")
        {'1': 2.0, '5': 0.5}
    """
    spec = field_spec(name)
    flag = "--" + name.replace("_", "-")
    parts = [p.strip() for p in str(text).replace(":", ",").split(",") if p.strip()]
    try:
        if spec.kind == "ints":
            return tuple(int(p) for p in parts)
        if spec.kind == "names":
            return None if text.strip().lower() == "none" else tuple(parts)
        if spec.kind == "range":
            if text.strip().lower() in ("none", "off", ""):
                return None
            lo, hi = (float(p) for p in parts)
            return (lo, hi)
        if spec.kind == "weights":
            if text.strip() in spec.choices:
                return text.strip()
            table = {}
            for p in str(text).split(","):
                key, sep, value = p.partition("=")
                if not sep:
                    raise ValueError(p)
                table[key.strip()] = float(value)
            return table
    except ValueError:
        shapes = {
            "ints": "integers separated by commas (64,32)",
            "names": "names separated by commas, or none",
            "range": "LOW,HIGH or none",
            "weights": f"{' or '.join(spec.choices)} or RATING=WEIGHT pairs",
        }
        raise ConfigError(f"expected {flag} {shapes[spec.kind]}, received {text!r}") from None
    return text


def show_config(task: str, model: str | None = None) -> str:
    """The defaults of ``task`` (with ``model``: that family's) as TOML that ``recfit
    train --config`` reads back into the same run.

    The settings decided at run time (``model auto`` picks its family by data size, and
    that family's defaults; ``opt auto`` on the row-wise path brings its ``lr``, ``wd``
    and ``reg``) are written as comments, so the file leaves them to the run.

    Raises:
        ConfigError: an unknown task or a model that is not one of the task's.

    Example:
        >>> [line for line in show_config("retrieval").splitlines() if "task =" in line]
        ['task = "retrieval"']
    """
    if task not in TASK_CONFIGS:
        raise ConfigError(f"expected task one of {list(TASK_CONFIGS)}, received {task!r}")
    cfg = validate_config({"task": task, **({} if model is None else {"model": model})})
    if model is not None:
        cfg = cfg.resolve_model(big=False)  # a named family: its defaults, whatever the size
    pending: dict[str, str] = {}
    cands = cfg.candidate_families()
    if len(cands) > 1:
        for f in cands:
            for k, v in f.defaults.items():
                note = f"model {cfg.model}: {_fmt(v)} with {f.name}"
                pending[k] = f"{pending[k]}, {note}" if k in pending else note
    if getattr(cfg, "budget", 0) is None and cfg.applies("budget"):
        pending["budget"] = f"model auto: {BUDGET_RULE}; 0: no search"
    if cfg.opt == "auto" and cfg.applies("opt") and any(f.row_wise for f in cands):
        for k, v in ROW_WISE_DEFAULTS.items():
            note = f"opt auto: {_fmt(v)} on the row-wise path"
            pending[k] = f"{pending[k]}, {note}" if k in pending else note
    head = (
        f"# recfit config, task {task}" + (f", model {model}" if model else "") + "\n"
        "# commented keys: decided at run time, or unset; `recfit train --config FILE` reads it\n"
    )
    return head + to_toml(cfg, pending=pending)
