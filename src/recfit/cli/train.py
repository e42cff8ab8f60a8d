"""``recfit train``, ``recfit evaluate`` and ``recfit lr-find``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit.cli.common import errors
from recfit.config import TrainConfig, load_config

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
    from recfit.errors import ConfigError

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
    data_dir: DataDirOpt = None,
    task: Annotated[
        str | None,
        typer.Option(help="rating, classification or retrieval (each has its own defaults)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="auto, dot, mf, svdpp or nn (rating); classifier; two_tower.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="random:0.2, user:0.2, temporal:0.2, last:1, kfold:5:0, u1..")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of split, init and batch order.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training data.")] = None,
    lr: Annotated[float | None, typer.Option(help="(Peak) learning rate.")] = None,
    wd: Annotated[float | None, typer.Option(help="Decoupled weight decay (fastai wd).")] = None,
    reg: Annotated[float | None, typer.Option(help="L2 penalty on the rows in each batch.")] = None,
    reg_exponent: Annotated[
        float | None,
        typer.Option(help="ALS: a row's ridge is reg * (its ratings) ** this (default 1)."),
    ] = None,
    bs: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    n_factors: Annotated[int | None, typer.Option("--n-factors", help="Embedding size.")] = None,
    y_range: Annotated[str | None, typer.Option("--y-range", help="LOW,HIGH or none.")] = None,
    layers: Annotated[str | None, typer.Option(help="MLP sizes for nn, e.g. 100,50.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="one_cycle, constant, cosine or cyclic.")
    ] = None,
    trainer: Annotated[
        str | None, typer.Option(help="sgd (Learner) or als (alternating least squares).")
    ] = None,
    opt: Annotated[
        str | None,
        typer.Option(
            help="auto (row-wise Adagrad for large dot/mf tables, else AdamW), adam, sgd, "
            "momentum or adagrad."
        ),
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping patience (epochs).")] = None,
    imbalance: Annotated[
        str | None,
        typer.Option(help="classification: none, class_weights, undersample, oversample, smote."),
    ] = None,
    head: Annotated[str | None, typer.Option(help="classification: softmax or ordinal.")] = None,
    objective: Annotated[str | None, typer.Option(help="retrieval: softmax or mse.")] = None,
    positive_min_rating: Annotated[
        float | None,
        typer.Option("--positive-min-rating", help="retrieval: ratings >= this are positives."),
    ] = None,
    relevant_min_rating: Annotated[
        float | None,
        typer.Option("--relevant-min-rating", help="retrieval: test ratings >= this count."),
    ] = None,
    exclude_seen: Annotated[
        bool | None,
        typer.Option(
            "--exclude-seen/--include-seen",
            help="retrieval: exclude each user's training items when ranking.",
        ),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option("--eval-every", help="retrieval: ranking metrics every N epochs."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to write.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the run in this directory from its checkpoint."),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", help="With --out: also checkpoint every N steps."),
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

    With --out the full training state is checkpointed (epoch ends, every
    --checkpoint-every steps, on Ctrl-C); --resume RUN continues an interrupted run.
    Under torchrun (or with --nproc N) each process trains one shard with DDP.
    """
    from recfit.errors import ConfigError, TrainingInterrupted
    from recfit.runs import train_run
    from recfit.train import distributed
    from recfit.train.checkpoint import resume_config

    if nproc is not None and nproc > 1 and distributed.env_world_size() == 1:
        with errors():
            code = distributed.launch(nproc, _forwarded_args(cli_ctx, {"nproc"}))
        raise typer.Exit(code)
    flags: dict[str, Any] = dict(
        dataset=dataset, task=task, model=model, split=split, seed=seed, epochs=epochs, lr=lr,
        wd=wd, reg=reg, reg_exponent=reg_exponent, bs=bs, n_factors=n_factors, y_range=y_range, layers=layers,
        schedule=schedule, trainer=trainer, opt=opt, patience=patience, imbalance=imbalance,
        head=head, objective=objective, positive_min_rating=positive_min_rating,
        relevant_min_rating=relevant_min_rating, exclude_seen=exclude_seen,
        eval_every=eval_every, device=device, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    with errors():
        if resume is not None:
            given = sorted(k for k, v in {**flags, "config": config}.items() if v is not None)
            given += ["bf16"] * bf16
            if given:
                raise ConfigError(
                    "expected no config flags with --resume (the run's stored config is "
                    f"used), received {', '.join(given)}"
                )
            if out is not None and out.resolve() != resume.resolve():
                raise ConfigError(f"expected --out to be the --resume run, received {out}")
            cfg, out = resume_config(resume), resume
        else:
            cfg = _config(config, data_dir=data_dir, bf16=bf16 or None, **flags)
        with distributed.session(cfg.device) as ctx:
            main = ctx is None or ctx.is_main
            if main:
                ranks = "" if ctx is None else f", {ctx.world} ranks ({ctx.backend})"
                _console.print(
                    f"{'resuming' if resume else 'training'} "
                    f"[bold]{'model auto' if cfg.model == 'auto' else cfg.model}[/bold] on "
                    f"[bold]{cfg.dataset}[/bold] (split {cfg.split}, seed {cfg.seed}, "
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
                    resume=resume is not None,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a trained run on a split of its dataset."""
    from recfit.data.sources import load_dataset, split_dataset
    from recfit.errors import ConfigError
    from recfit.runs import load_run
    from recfit.train.learner import Learner

    with errors():
        if part not in ("test", "train"):
            raise ConfigError(f"expected --part test or train, received {part!r}")
        cfg, model, users, items = load_run(run)
        ddir = str(data_dir) if data_dir is not None else cfg.data_dir
        data = load_dataset(cfg.dataset, data_dir=ddir, user=cfg.user_col, item=cfg.item_col,
                            rating=cfg.rating_col, timestamp=cfg.timestamp_col, weight=cfg.weight_col)  # fmt: skip
        if data.users != users or data.items != items:
            raise ConfigError(
                f"expected the dataset the run was trained on ({cfg.dataset!r}), "
                "received data whose user or item ids differ"
            )
        sp = split_dataset(
            data, split or cfg.split, seed=cfg.seed if seed is None else seed, data_dir=ddir
        )
        target = sp.test if part == "test" else sp.train
        learn = Learner(
            model, sp.train, None, loss=cfg.loss, reg=cfg.reg, device=cfg.device, progress=False
        )
        metrics = learn.evaluate(target)
        if as_json:
            typer.echo(json.dumps(metrics, indent=2))
        else:
            _console.print(
                metrics_table(metrics, f"{part} part of {sp.name} ({len(target):,} ratings)")
            )


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
    from recfit.data.sources import load_dataset, split_dataset
    from recfit.runs import build_learner

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
            table.add_row(k, f"{getattr(res, k):.2e}")
        _console.print(table)
        _console.print(f"plot: {out}")
