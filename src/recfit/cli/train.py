"""``recfit train``, ``recfit evaluate`` and ``recfit lr-find``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit.cli.common import errors
from recfit.config import (
    MODEL_DEFAULTS,
    ROW_WISE_DEFAULTS,
    TASK_DEFAULTS,
    TrainConfig,
    load_config,
)
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


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple | list):
        return ",".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def shown_default(name: str) -> str:
    """The default of config field ``name`` as ``--help`` shows it, with the values the
    task, the resolved model or the row-wise optimiser bring instead.

    Example:
        >>> shown_default("epochs")
        '5 (svdpp: 6; retrieval: 30)'
    """
    text = _fmt(TrainConfig.model_fields[name].default)
    extra = [f"{m}: {_fmt(d[name])}" for m, d in MODEL_DEFAULTS.items() if name in d]
    extra += [f"{t}: {_fmt(d[name])}" for t, d in TASK_DEFAULTS.items() if name in d]
    if name in ROW_WISE_DEFAULTS:
        extra.append(f"row-wise adagrad: {_fmt(ROW_WISE_DEFAULTS[name])}")
    if name == "bs":
        text = "0 (auto: from the number of ratings)"
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _opt(name: str, help: str, *decls: str) -> Any:
    """A ``typer.Option`` for config field ``name`` (default ``None``: the config's value
    wins), showing the config's default in ``--help``."""
    return typer.Option(*decls, help=help, show_default=shown_default(name))


def _config(config: Path | None, **flags: Any) -> TrainConfig:
    base = load_config(config) if config is not None else TrainConfig()
    if flags.get("data_dir") is not None:
        flags["data_dir"] = str(flags["data_dir"])
    if flags.get("y_range") is not None:
        flags["y_range"] = _parse_range(flags["y_range"])
    if flags.get("layers") is not None:
        flags["layers"] = tuple(int(x) for x in str(flags["layers"]).split(",") if x.strip())
    return base.replace(**flags)


def _parse_range(text: str) -> tuple[float, float] | None:
    if text.lower() in ("none", "off", ""):
        return None
    parts = text.replace(":", ",").split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"expected --y-range LOW,HIGH or none, received {text!r}") from None
    return (lo, hi)


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


def train(
    cli_ctx: typer.Context,
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    train_file: Annotated[
        Path | None,
        typer.Option(
            "--train",
            help="Training ratings (CSV/Parquet) of your own split; use with --test.",
        ),
    ] = None,
    test_file: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="Held-out ratings (CSV/Parquet) for --train/--dataset FILE; ids are mapped "
            "through the training file's, unknown ones dropped and counted.",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Column names of a rating file, e.g. user=userId,item=movieId,rating=rating,"
            "time=timestamp,weight=w (or the --*-col flags).",
        ),
    ] = None,
    user_col: Annotated[
        str | None, _opt("user_col", "Column of user ids in a rating file.", "--user-col")
    ] = None,
    item_col: Annotated[
        str | None, _opt("item_col", "Column of item ids in a rating file.", "--item-col")
    ] = None,
    rating_col: Annotated[
        str | None, _opt("rating_col", "Column of ratings in a rating file.", "--rating-col")
    ] = None,
    time_col: Annotated[
        str | None,
        _opt("timestamp_col", "Column of timestamps in a rating file.", "--time-col"),
    ] = None,
    weight_col: Annotated[
        str | None, _opt("weight_col", "Column of row weights in a rating file.", "--weight-col")
    ] = None,
    task: Annotated[
        str | None,
        _opt("task", "rating, classification or retrieval (each has its own defaults)."),
    ] = None,
    model: Annotated[
        str | None,
        _opt("model", "auto, dot, mf, svdpp or nn (rating); classifier; two_tower."),
    ] = None,
    split: Annotated[
        str | None,
        _opt("split", "random:0.2, user:0.2, temporal:0.2, last:1, kfold:5:0, u1.."),
    ] = None,
    seed: Annotated[int | None, _opt("seed", "Seed of split, init and batch order.")] = None,
    epochs: Annotated[int | None, _opt("epochs", "Passes over the training data.")] = None,
    lr: Annotated[float | None, _opt("lr", "(Peak) learning rate.")] = None,
    wd: Annotated[float | None, _opt("wd", "Decoupled weight decay (fastai wd).")] = None,
    reg: Annotated[float | None, _opt("reg", "L2 penalty on the rows in each batch.")] = None,
    reg_exponent: Annotated[
        float | None,
        _opt("reg_exponent", "ALS: a row's ridge is reg * (its ratings) ** this."),
    ] = None,
    bs: Annotated[int | None, _opt("bs", "Batch size.")] = None,
    n_factors: Annotated[int | None, _opt("n_factors", "Embedding size.", "--n-factors")] = None,
    y_range: Annotated[str | None, _opt("y_range", "LOW,HIGH or none.", "--y-range")] = None,
    layers: Annotated[str | None, _opt("layers", "MLP sizes for nn, e.g. 100,50.")] = None,
    schedule: Annotated[
        str | None, _opt("schedule", "one_cycle, constant, cosine or cyclic.")
    ] = None,
    trainer: Annotated[
        str | None, _opt("trainer", "sgd (Learner) or als (alternating least squares).")
    ] = None,
    opt: Annotated[
        str | None,
        _opt(
            "opt",
            "auto (row-wise Adagrad for large dot/mf tables, else AdamW), adam, sgd, "
            "momentum or adagrad.",
        ),
    ] = None,
    patience: Annotated[int | None, _opt("patience", "Early stopping patience (epochs).")] = None,
    inner_valid: Annotated[
        float | None,
        _opt(
            "inner_valid",
            "With --patience: share of training rows early stopping watches; the "
            "held-out part is evaluated once, after training.",
            "--inner-valid",
        ),
    ] = None,
    imbalance: Annotated[
        str | None,
        _opt("imbalance", "classification: none, class_weights, undersample, oversample, smote."),
    ] = None,
    head: Annotated[str | None, _opt("head", "classification: softmax or ordinal.")] = None,
    objective: Annotated[str | None, _opt("objective", "retrieval: softmax or mse.")] = None,
    positive_min_rating: Annotated[
        float | None,
        _opt(
            "positive_min_rating",
            "retrieval: ratings >= this are positives.",
            "--positive-min-rating",
        ),
    ] = None,
    relevant_min_rating: Annotated[
        float | None,
        _opt(
            "relevant_min_rating",
            "retrieval: test ratings >= this count.",
            "--relevant-min-rating",
        ),
    ] = None,
    exclude_seen: Annotated[
        bool | None,
        _opt(
            "exclude_seen",
            "retrieval: exclude each user's training items when ranking.",
            "--exclude-seen/--include-seen",
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        _opt("eval_every", "retrieval: ranking metrics every N epochs.", "--eval-every"),
    ] = None,
    device: Annotated[str | None, _opt("device", "auto, cpu or cuda.")] = None,
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
    checkpoint_every: Annotated[
        int | None,
        _opt(
            "checkpoint_every", "With --out: also checkpoint every N steps.", "--checkpoint-every"
        ),
    ] = None,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast on CUDA (error without CUDA).")
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option("--nproc", help="Train with N processes (launches torchrun, DDP)."),
    ] = None,
) -> None:
    """Train a model and write a run directory (config, metrics, history, plots, bundle, report).

    With --out the run directory is locked while training, config.json is written first,
    the full training state is checkpointed (epoch ends, every --checkpoint-every steps,
    on Ctrl-C), and the finished run replaces the directory as one unit. An existing run
    in --out is refused unless --force; --resume RUN continues an interrupted run. Under
    torchrun (or with --nproc N) each process trains one shard with DDP.
    """
    if nproc is not None and nproc > 1 and distributed.env_world_size() == 1:
        with errors():
            code = distributed.launch(nproc, _forwarded_args(cli_ctx, {"nproc"}))
        raise typer.Exit(code)
    flags: dict[str, Any] = dict(
        dataset=dataset, task=task, model=model, split=split, seed=seed, epochs=epochs, lr=lr,
        wd=wd, reg=reg, reg_exponent=reg_exponent, bs=bs, n_factors=n_factors, y_range=y_range, layers=layers,
        schedule=schedule, trainer=trainer, opt=opt, patience=patience, inner_valid=inner_valid, imbalance=imbalance,
        head=head, objective=objective, positive_min_rating=positive_min_rating,
        relevant_min_rating=relevant_min_rating, exclude_seen=exclude_seen,
        eval_every=eval_every, device=device, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    with errors():
        flags.update(_column_flags(columns, user_col, item_col, rating_col, time_col, weight_col))
        flags.update(_file_flags(dataset, train_file, test_file))
        if resume is not None:
            given = sorted(k for k, v in {**flags, "config": config}.items() if v is not None)
            given += ["bf16"] * bf16 + ["force"] * force
            if given:
                raise ConfigError(
                    "expected no config flags with --resume (the run's stored config is "
                    f"used), received {', '.join(given)}"
                )
            if out is not None and out.resolve() != resume.resolve():
                raise ConfigError(f"expected --out to be the --resume run, received {out}")
            cfg, out = run_config(resume), resume
        else:
            cfg = _config(config, data_dir=data_dir, bf16=bf16 or None, **flags)
        with distributed.session(cfg.device) as ctx:
            main = ctx is None or ctx.is_main
            if main:
                ranks = "" if ctx is None else f", {ctx.world} ranks ({ctx.backend})"
                _console.print(
                    f"{'resuming' if resume else 'training'} "
                    f"[bold]{'model auto' if cfg.model == 'auto' else cfg.model}[/bold] on "
                    f"[bold]{cfg.dataset}[/bold] (split {cfg.split}"
                    + (f" {cfg.test_file}" if cfg.test_file else "")
                    + f", seed {cfg.seed}, "
                    + (
                        "epochs by model, "
                        if cfg.model == "auto" and "epochs" not in cfg.model_fields_set
                        else f"{cfg.epochs} epochs, "
                    )
                    + ("opt auto" if cfg.opt == "auto" else f"lr {cfg.lr:g}, wd {cfg.wd:g}")
                    + f", bs {cfg.bs or 'auto'}{ranks})"
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
                    f"model {rc.model}, {rc.epochs} epochs"
                    + (" (model auto)" if cfg.model == "auto" else "")
                )
                if rc.trainer == "sgd":
                    _console.print(
                        f"optimiser {rc.opt}, lr {rc.lr:g}, wd {rc.wd:g}, reg {rc.reg:g}"
                        + (" (opt auto)" if cfg.opt == "auto" else "")
                    )
                _console.print(metrics_table(result.metrics, "validation"))
                if result.out is not None:
                    _console.print(f"run directory: {result.out}")


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
    info = split.data.meta.get("test_file")
    if info and info["dropped_unknown_rows"]:
        _console.print(
            f"[yellow]test file:[/yellow] {info['dropped_unknown_rows']:,} of {info['rows']:,} "
            f"rows dropped: {info['dropped_unknown_users']:,} users and "
            f"{info['dropped_unknown_items']:,} items are not in the training file"
        )


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
            args += [p.opts[0], str(v)]
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
