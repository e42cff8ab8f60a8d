"""``recfit train``, ``recfit evaluate`` and ``recfit lr-find``.

``recfit train`` has one flag per config field, generated from the task configs'
schema (:mod:`recfit.config.schema`): its type, its choices (the models of the family
registry) and its default per task in ``--help``. A flag given overrides the value of the
``--config`` file.
"""

from __future__ import annotations

import enum
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit.cli.common import errors
from recfit.config import RatingConfig, TrainConfig, load_config, validate_config
from recfit.config.schema import FieldSpec, field_specs, parse_flag, shown_default
from recfit.data.sources import load_dataset, split_dataset
from recfit.errors import ConfigError, TrainingInterrupted
from recfit.models.registry import TRAINERS, families
from recfit.runs import evaluate_run, run_config, train_run
from recfit.tasks.rating import build_learner
from recfit.train import distributed

__all__ = ["evaluate", "lr_find", "train"]

_console = Console()

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML or JSON config; flags override it.")
]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset", "-d", help="MovieLens name (ml-100k, ml-1m, ...) or a CSV/Parquet path."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="RECFIT_DATA_DIR", help="Folder holding MovieLens releases."),
]

#: flag names that are not ``--field-name`` (the first is the one shown)
_DECLS: dict[str, tuple[str, ...]] = {
    "dataset": ("--dataset", "-d"),
    "timestamp_col": ("--time-col", "--timestamp-col"),
    "test_file": ("--test",),
    "exclude_seen": ("--exclude-seen/--include-seen",),
}
_HELP: dict[str, str] = {
    "dataset": "MovieLens name (ml-100k, ml-1m, ...) or a CSV/Parquet path.",
    "data_dir": "Folder holding MovieLens releases.",
    "test_file": "Held-out ratings (CSV/Parquet) for --train/--dataset FILE; ids are mapped "
    "through the training file's, unknown ones dropped and counted.",
}
_PANELS = {
    "rating": "Rating",
    "classification": "Classification",
    "retrieval": "Retrieval",
    "topn": "Top-N",
}


def _model_help() -> str:
    by_task: dict[str, list[str]] = {}
    for f in families():
        by_task.setdefault(f.task, []).append(f.name)
    by_task["rating"] = ["auto", *by_task.get("rating", [])]
    return "The model family: " + "; ".join(f"{t}: {', '.join(n)}" for t, n in by_task.items())


def _trainer_help() -> str:
    parts = []
    for t in TRAINERS:
        names = [f.name for f in families() if t in f.trainers]
        if names:
            parts.append(f"{t} ({', '.join(names)})")
    return "How the model trains (default: the family's first): " + ", ".join(parts) + "."


def _flag(spec: FieldSpec) -> Any:
    """The annotation of the ``train`` parameter of config field ``spec`` (default
    ``None``: the config's value wins)."""
    help = {"model": _model_help(), "trainer": _trainer_help()}.get(spec.name)
    help = help or _HELP.get(spec.name) or spec.help
    if len(spec.tasks) < len(_PANELS):
        panel = " and ".join(_PANELS[t] for t in spec.tasks)
    else:
        panel = "Data and split" if spec.name in _DATA_FIELDS else "Every task"
    kw: dict[str, Any] = {
        "help": help,
        "show_default": shown_default(spec.name),
        "rich_help_panel": panel,
    }
    decls = _DECLS.get(spec.name, ("--" + spec.name.replace("_", "-"),))
    if spec.kind == "bool":
        if "/" not in decls[0]:
            decls = (f"{decls[0]}/--no-{decls[0][2:]}",)
        return Annotated[bool | None, typer.Option(*decls, **kw)]
    if spec.name == "data_dir":
        return Annotated[Path | None, typer.Option(*decls, envvar="RECFIT_DATA_DIR", **kw)]
    if spec.name == "test_file":
        return Annotated[Path | None, typer.Option(*decls, **kw)]
    typ: Any = {"int": int, "float": float}.get(spec.kind, str)
    if spec.kind == "choice":  # typer turns an Enum into click's choice
        typ = _choices(spec)
    return Annotated[typ | None, typer.Option(*decls, **kw)]


def _choices(spec: FieldSpec) -> type[enum.Enum]:
    """An Enum of the values of a choice field (typer's way to a click choice)."""
    made: type[enum.Enum] = enum.Enum(  # type: ignore[assignment,misc]
        f"{spec.name}_choice", {c: c for c in spec.choices}, type=str
    )
    return made


_DATA_FIELDS = frozenset(
    {"dataset", "data_dir", "user_col", "item_col", "rating_col", "timestamp_col",
     "weight_col", "split", "test_file", "seed", "task", "device"}
)  # fmt: skip


def _config(config: Path | None, **flags: Any) -> TrainConfig:
    """The ``--config`` file's config (or the defaults) with the flags given (not
    ``None``) over it; flags of the text kinds (``64,32``, ``none``...) are parsed here."""
    base = load_config(config) if config is not None else None
    data: dict[str, Any] = {}
    if base is not None:
        data = {"task": base.task, **base.model_dump(exclude_unset=True)}
    specs = {s.name: s for s in field_specs()}
    for name, v in flags.items():
        if v is None:
            continue
        if isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, str) and specs[name].kind in ("ints", "names", "range", "weights"):
            v = parse_flag(name, v)
        data[name] = v
    source = "the command line" + ("" if config is None else f" over {str(config)!r}")
    return validate_config(data, source=source)


def metrics_table(metrics: dict[str, float], title: str, reference: str | None = None) -> Table:
    """A small table of metric values (rating metrics first, then loss and time)."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, int | float):
            table.add_row(k, f"{v:.4f}" if k != "fit_seconds" else f"{v:.2f} s")
    if reference:
        table.caption = reference
    return table


def _train(
    cli_ctx: typer.Context,
    config: ConfigOpt = None,
    train_file: Annotated[
        Path | None,
        typer.Option(
            "--train",
            help="Training ratings (CSV/Parquet) of your own split; use with --test.",
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Column names of a rating file, e.g. user=userId,item=movieId,rating=rating,"
            "time=timestamp,weight=w (or the --*-col flags).",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to write.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace the run in --out (finished or not) when training starts."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the run in this directory from its checkpoint."),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option("--nproc", help="Train with N processes (launches torchrun, DDP)."),
    ] = None,
    **fields: Any,
) -> None:
    """Train a model and write a run directory (config, metrics, history, plots, bundle, report).

    Every config field has a flag (defaults per task and model in brackets); flags
    override the --config file. With --out the run directory is locked while training,
    config.json is written first, the full training state is checkpointed (epoch ends,
    every --checkpoint-every steps, on Ctrl-C), and the finished run replaces the
    directory as one unit. An existing run in --out is refused unless --force; --resume
    RUN continues an interrupted run. Under torchrun (or with --nproc N) each process
    trains one shard with DDP. `recfit config show --task T` prints a task's defaults as
    a --config file.
    """
    if nproc is not None and nproc > 1 and distributed.env_world_size() == 1:
        with errors():
            code = distributed.launch(nproc, _forwarded_args(cli_ctx, {"nproc"}))
        raise typer.Exit(code)
    flags: dict[str, Any] = {k: v for k, v in fields.items() if k != "test_file"}
    with errors():
        cols = ("user_col", "item_col", "rating_col", "timestamp_col", "weight_col")
        flags.update(_column_flags(columns, *(fields.get(c) for c in cols)))
        flags.update(_file_flags(fields.get("dataset"), train_file, fields.get("test_file")))
        if resume is not None:
            from_env = {  # RECFIT_DATA_DIR in the environment is not a flag given
                k for k in flags if _source(cli_ctx, k) == "ENVIRONMENT"
            }
            given = sorted(
                k
                for k, v in {**flags, "config": config}.items()
                if v is not None and k not in from_env
            )
            given += ["force"] * force
            if given:
                raise ConfigError(
                    "expected no config flags with --resume (the run's stored config is "
                    f"used), received {', '.join(given)}"
                )
            if out is not None and out.resolve() != resume.resolve():
                raise ConfigError(f"expected --out to be the --resume run, received {out}")
            cfg, out = run_config(resume), resume
        else:
            cfg = _config(config, **flags)
        with distributed.session(cfg.device) as ctx:
            main = ctx is None or ctx.is_main
            if main:
                ranks = "" if ctx is None else f", {ctx.world} ranks ({ctx.backend})"
                _console.print(
                    f"{'resuming' if resume else 'training'} "
                    f"[bold]{'model auto' if cfg.model == 'auto' else cfg.model}[/bold] on "
                    f"[bold]{cfg.dataset}[/bold] ({_summary(cfg)}{ranks})"
                )
            try:
                result = train_run(
                    cfg, out, progress=False if quiet or not main else None,
                    resume=resume is not None, force=force,
                    on_split=_print_dropped if main else None,
                )  # fmt: skip
            except TrainingInterrupted as exc:
                if main:
                    Console(stderr=True).print(f"[yellow]interrupted:[/yellow] {exc}")
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                where = f"; the last checkpoint in {out} is kept" if out is not None else ""
                Console(stderr=True).print(f"[yellow]interrupted[/yellow] outside training{where}")
                raise typer.Exit(130) from None
            if main:
                rc = result.config
                _console.print(
                    f"model {rc.model}, "
                    + (f"{rc.epochs} epochs" if rc.applies("epochs") else f"trainer {rc.trainer}")
                    + (" (model auto)" if cfg.model == "auto" else "")
                )
                found = result.details.get("model_auto")
                if cfg.model == "auto" and isinstance(found, dict) and "budget_seconds" in found:
                    spent = found.get("search_seconds")
                    _console.print(
                        f"model auto chose {found.get('chosen')} by {found.get('by')}"
                        + ("" if spent is None else f", searching {spent:.0f} s")
                        + f" of a {found['budget_seconds']:g} s budget",
                        markup=False,
                    )
                if rc.trainer == "sgd":
                    _console.print(
                        f"optimiser {rc.opt}, lr {rc.lr:g}, wd {rc.wd:g}, reg {rc.reg:g}"
                        + (" (opt auto)" if cfg.opt == "auto" else "")
                    )
                _console.print(metrics_table(result.metrics, "validation"))
                if result.out is not None:
                    _console.print(f"run directory: {result.out}")


def _summary(cfg: TrainConfig) -> str:
    """The split and the training settings that apply, as the start line shows them."""
    parts = [f"split {cfg.split}" + (f" {cfg.test_file}" if cfg.test_file else ""),
             f"seed {cfg.seed}"]  # fmt: skip
    if cfg.applies("epochs"):
        auto = cfg.model == "auto" and "epochs" not in cfg.model_fields_set
        parts.append("epochs by model" if auto else f"{cfg.epochs} epochs")
    if cfg.applies("lr"):
        parts.append("opt auto" if cfg.opt == "auto" else f"lr {cfg.lr:g}, wd {cfg.wd:g}")
    if cfg.applies("bs"):
        parts.append(f"bs {cfg.bs or 'auto'}")
    if not cfg.applies("epochs"):
        parts.append(f"trainer {cfg.trainer}")
    if cfg.applies("budget"):  # model auto: how long it may search
        budget = getattr(cfg, "budget", None)
        parts.append("budget by size" if budget is None else f"budget {budget:g} s")
    return ", ".join(parts)


def _command(impl: Any, exclude: frozenset[str] = frozenset()) -> Any:
    """``impl`` with one keyword parameter per config field (its flag: :func:`_flag`;
    not those in ``exclude``) in place of ``**fields``, as typer reads a command's
    signature."""
    sig = inspect.signature(impl, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [
        inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_flag(s))
        for s in field_specs()
        if s.name not in exclude
    ]

    def command(**kwargs: Any) -> None:
        impl(**kwargs)

    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = impl.__doc__
    command.__name__ = command.__qualname__ = impl.__name__.lstrip("_")
    return command


train = _command(_train)


_COLUMN_KEYS = {
    "user": "user_col",
    "item": "item_col",
    "rating": "rating_col",
    "time": "timestamp_col",
    "timestamp": "timestamp_col",
    "weight": "weight_col",
}


def _column_flags(columns: str | None, *given: str | None) -> dict[str, str]:
    """Config column keys from ``--columns role=name,...`` and the ``--*-col`` flags."""
    flags: dict[str, str] = {}
    for part in (columns or "").split(","):
        if not part.strip():
            continue
        role, sep, name = part.partition("=")
        key = _COLUMN_KEYS.get(role.strip().lower())
        if not sep or key is None or not name.strip():
            raise ConfigError(
                "expected --columns as role=name pairs (roles user, item, rating, time, "
                f"weight), received {part.strip()!r}"
            )
        flags[key] = name.strip()
    keys = ("user_col", "item_col", "rating_col", "timestamp_col", "weight_col")
    for key, value in zip(keys, given, strict=True):
        if value is not None:
            if key in flags and flags[key] != value:
                raise ConfigError(
                    f"expected one column name for {key}, received {flags[key]!r} in --columns "
                    f"and {value!r} in its flag"
                )
            flags[key] = value
    return flags


def _file_flags(
    dataset: str | None, train_file: Path | None, test_file: Path | None
) -> dict[str, str]:
    if train_file is not None and dataset is not None:
        raise ConfigError(
            f"expected --train or --dataset, received both ({str(train_file)!r}, {dataset!r})"
        )
    if (train_file is None) != (test_file is None) and dataset is None:
        missing = "--test" if test_file is None else "--train (or --dataset FILE)"
        raise ConfigError(f"expected {missing} with the other, received only one")
    out: dict[str, str] = {}
    if train_file is not None:
        out["dataset"] = str(train_file)
    if test_file is not None:
        out["test_file"] = str(test_file)
    return out


def _print_dropped(split: Any) -> None:
    pos = split.data.meta.get("positives")
    if pos:
        what = (
            "implicit data (no rating column): each row is a positive of value 1"
            if pos["implicit"]
            else "every row"
            if pos["min_rating"] is None
            else f"ratings >= {pos['min_rating']:g}"
        )
        merged = split.data.meta.get("duplicates_merged", 0)
        _console.print(
            f"positives: {pos['positives']:,} of {pos['rows']:,} rows, {what}"
            + (f"; {merged:,} repeated (user, item) rows summed" if merged else "")
        )
    info = split.data.meta.get("test_file")
    if info and info["dropped_unknown_rows"]:
        _console.print(
            f"[yellow]test file:[/yellow] {info['dropped_unknown_rows']:,} of {info['rows']:,} "
            f"rows dropped: {info['dropped_unknown_users']:,} users and "
            f"{info['dropped_unknown_items']:,} items are not in the training file"
        )


def _source(ctx: typer.Context, name: str) -> str | None:
    """Where click took parameter ``name`` from (``COMMANDLINE``, ``ENVIRONMENT``...), by
    name: typer may hand over a ParameterSource of its own click copy."""
    source = ctx.get_parameter_source(name)
    return None if source is None else source.name


def _forwarded_args(ctx: typer.Context, exclude: set[str]) -> list[str]:
    """This command's name and options as given (minus ``exclude``), for torchrun."""
    args = [ctx.info_name or "train"]
    for p in ctx.command.params:
        if p.param_type_name != "option" or p.name in exclude or p.name is None:
            continue
        v = ctx.params.get(p.name)
        if getattr(p, "is_flag", False):
            if v is None or v == p.default:
                continue
            if v:
                args.append(p.opts[0])
            elif p.secondary_opts:  # e.g. --include-seen, the "off" side of a pair
                args.append(p.secondary_opts[0])
        elif v is not None:
            args += [p.opts[0], str(v.value if isinstance(v, enum.Enum) else v)]
    return args


def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by recfit train.")],
    split: Annotated[
        str | None, typer.Option(help="Split to evaluate on (default: the run's).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Split seed (default: the run's).")] = None,
    data_dir: DataDirOpt = None,
    part: Annotated[str, typer.Option(help="test or train part of the split.")] = "test",
    allow_overlap: Annotated[
        bool,
        typer.Option(
            "--allow-overlap",
            help="Measure even when test rows are rows the run trained on (refused otherwise).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a trained run on a split of its dataset.

    Test rows the run trained on (same user and item) are refused unless --allow-overlap:
    another split of the same data usually shares most of its rows with the run's
    training part.
    """
    with errors():
        ev = evaluate_run(run, split, seed=seed, data_dir=data_dir, part=part,
                          allow_overlap=allow_overlap)  # fmt: skip
        if as_json:
            typer.echo(json.dumps({**ev.metrics, "overlap_rows": ev.n_overlap}, indent=2))
        else:
            table = metrics_table(ev.metrics, f"{part} part of {ev.split} ({ev.n_rows:,} ratings)")
            if ev.n_overlap:
                table.caption = (
                    f"{ev.n_overlap:,} of {ev.n_rows:,} rows were training rows of the run"
                )
            _console.print(table)


def lr_find(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: Annotated[str | None, typer.Option(help="auto, dot, mf, svdpp or nn.")] = None,
    split: Annotated[str | None, typer.Option(help="Split spec.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    wd: Annotated[float | None, typer.Option(help="Weight decay during the test.")] = None,
    bs: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    start_lr: Annotated[float, typer.Option("--start-lr")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr")] = 10.0,
    num_it: Annotated[int, typer.Option("--num-it")] = 100,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the plot (PNG).")] = Path(
        "lr_find.png"
    ),
) -> None:
    """Run the LR range test, write its plot and print the suggested learning rates."""
    with errors():
        cfg = _config(config, dataset=dataset, data_dir=data_dir, model=model, split=split,
                      seed=seed, wd=wd, bs=bs)  # fmt: skip
        if not isinstance(cfg, RatingConfig):
            raise ConfigError(f"expected task 'rating' for lr-find, received {cfg.task!r}")
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, user=cfg.user_col, item=cfg.item_col,
                            rating=cfg.rating_col, timestamp=cfg.timestamp_col, weight=cfg.weight_col)  # fmt: skip
        sp = split_dataset(data, cfg.split, seed=cfg.seed, data_dir=cfg.data_dir)
        learn = build_learner(cfg, sp.train, None, progress=False)
        res = learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it)
        fig = res.plot()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110, bbox_inches="tight")
        table = Table(title="suggested learning rates")
        table.add_column("rule")
        table.add_column("lr", justify="right")
        for k in ("valley", "steep", "minimum"):
            v = getattr(res, k)
            table.add_row(k, "none" if v is None else f"{v:.2e}")
        reason = getattr(res, "reason", None)
        if reason:
            table.caption = str(reason)
        _console.print(table)
        _console.print(f"plot: {out}")
