"""Distributed training on PyTorch's own engine (``torchrun`` + DistributedDataParallel).

Launch::

    torchrun --nproc_per_node=2 -m recfit train -d ml-1m --out runs/ddp     # one machine
    recfit train -d ml-1m --nproc 2 --out runs/ddp                          # the same
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29400 --rdzv-id=job1 -m recfit train ...      # on each node

What every rank does:

* It joins the process group torchrun describes in its environment (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): **gloo** on CPU,
  **NCCL** on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``).
* It loads and splits the data exactly like a single process (same seed), draws the same
  permutation of the training rows each epoch, and reads only **its shard of every
  batch**: batch ``b`` is cut into ``WORLD_SIZE`` contiguous near-equal parts
  (:meth:`recfit.train.batches.TensorData.epoch` with ``shard=``). The global batch is
  therefore ``bs`` whatever the number of ranks, the number of steps per epoch is that of
  one process, and the run follows the single-process trajectory up to float rounding.
* Each rank scales its rows by ``w / Σw`` with Σw the *global* batch's weight (computed
  locally from the shared permutation, no communication), and the gradients are
  **summed** across ranks. Every ``STOP_CHECK_EVERY`` steps the ranks also all-reduce a
  stop flag, so a Ctrl-C / SIGTERM stops every rank at the same step. The autograd path runs the forward pass through
  :class:`~torch.nn.parallel.DistributedDataParallel` with a summing communication hook;
  the fused (hand-written gradient) path of the dot models writes its gradient itself and
  all-reduces it in one flattened buffer per step (no autograd fallback is needed).
* The row-wise path (row-wise AdamW / Adagrad) exchanges only the rows each step
  touches (:mod:`recfit.train.sparse_dist`; the counts so far are in
  :attr:`DistContext.exchanged`). With the compiled CPU kernel a rank reads, of every
  global batch, the ratings of the users it owns (``user % world == rank``) instead of
  a contiguous shard: users' rows never travel during an epoch, the items' ``(row,
  gradient)`` pairs go to every rank, which all apply the same item update; users'
  rows are copied from their owners before the weights are read. Otherwise every rank
  sends the pairs of both sides of its shard and every rank applies the same update.
* Validation metrics are **exact**: each rank evaluates its contiguous part of the
  evaluation rows and the sums Σw, Σw·loss, Σw·penalty, Σw·(p-t)², Σw·|p-t| (and for
  ``r2`` Σw·t then Σw·(t-t̄)²) are all-reduced in float64, never a mean of means; metrics
  that do not decompose into sums (the rating-level metrics) gather the predictions.
* Only rank 0 writes checkpoints and the run directory.

``bf16`` (``--bf16``): autocast in bfloat16 around the autograd forward pass on CUDA;
on a machine without CUDA it is a :class:`~recfit.errors.ConfigError` (never a silent
float32 run). The fused dot-model step is elementwise float32 work that autocast does not
change.

Example:
    >>> shard_range(10, rank=1, world=3)
    (3, 6)
    >>> current() is None  # no process group in a plain process
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from recfit._cpu import cpu_cores
from recfit.errors import ConfigError
from recfit.metrics.levels import is_level_metric
from recfit.metrics.rating import r2_from_sums
from recfit.train.evaluation import outputs
from recfit.train.sparse_dist import Exchanged

if TYPE_CHECKING:
    from recfit.data.interactions import Interactions
    from recfit.train.learner import Learner

__all__ = [
    "STOP_CHECK_EVERY",
    "DistContext",
    "attach",
    "current",
    "enable_bf16",
    "env_world_size",
    "evaluate",
    "free_port",
    "launch",
    "launch_command",
    "session",
    "shard_range",
]

STOP_CHECK_EVERY = 8
"""Steps between the ranks' agreement on a stop request (Ctrl-C / SIGTERM)."""


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that ``rank`` of ``world`` reads (contiguous, near-equal).

    Example:
        >>> [shard_range(5, r, 2) for r in range(2)]
        [(0, 2), (2, 5)]
    """
    return n * rank // world, n * (rank + 1) // world


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 outside torchrun).

    Example:
        >>> env_world_size() >= 1
        True
    """
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(
            f"expected an integer WORLD_SIZE, received {os.environ.get('WORLD_SIZE')!r}"
        ) from None


@dataclass
class DistContext:
    """This process's place in the process group.

    Attributes:
        rank: global rank; rank 0 writes files.
        world: number of processes.
        local_rank: rank on this machine (selects the GPU under NCCL).
        backend: ``"gloo"`` or ``"nccl"``.
        device: the device this rank trains on.
        exchanged: what the row-wise path's exchanges have moved so far.
    """

    rank: int
    world: int
    local_rank: int
    backend: str
    device: torch.device
    stop_agreed: bool = False
    exchanged: Exchanged = field(default_factory=Exchanged)
    owned: Any = field(default=None, repr=False)
    """The compiled row-wise scheme's scratch (:class:`~recfit.train.sparse_dist.OwnedRows`)."""
    replicas_stale: bool = False
    """Whether users' rows changed on their owners since :func:`~recfit.train.sparse_dist.replicate`."""
    shared_memory: bool = False
    """Whether every rank runs on this machine, so the compiled row-wise scheme may
    exchange through shared memory (:class:`~recfit.train.sparse_dist.Shared`)."""
    _eval_cache: dict[int, tuple[Any, Interactions]] = field(default_factory=dict, repr=False)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes)."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world)`` as :meth:`TensorData.epoch` takes it."""
        return (self.rank, self.world)

    def all_reduce_(self, t: Tensor) -> Tensor:
        """Sum ``t`` over the ranks in place (on this rank's device) and return it."""
        if t.device != self.device and self.backend == "nccl":
            moved = t.to(self.device)
            dist.all_reduce(moved)
            t.copy_(moved)
        else:
            dist.all_reduce(t)
        return t

    # ---------------------------------------------------------------- training hooks
    def global_weight(self, learn: Learner, w_sum: Tensor) -> Tensor:
        """The global batch's Σw (from the batch, else all-reduced); every
        :data:`STOP_CHECK_EVERY` steps also agrees on :attr:`stop_agreed` (Ctrl-C)."""
        total = learn.batch.get("weight_total")
        if learn.train_iter % STOP_CHECK_EVERY == 0 or total is None:
            flag = float(learn.stop_requested)
            t = torch.stack([w_sum.double(), w_sum.new_tensor(flag).double()])
            self.all_reduce_(t)
            self.stop_agreed = bool(t[1] > 0)
            if total is None:
                return t[0].to(w_sum.dtype)
        return total

    def sync_grads(self, params: Sequence[Tensor]) -> None:
        """Sum the gradients of ``params`` over the ranks (one flattened all-reduce)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        dense = [g for g in grads if not g.is_sparse]
        for g in grads:
            if g.is_sparse:  # row-wise sparse gradients: sum them as dense rows
                raise ConfigError(
                    "expected dense gradients under distributed training, received a sparse "
                    "gradient; use a dense optimiser with torchrun"
                )
        flat = torch.cat([g.reshape(-1) for g in dense])
        self.all_reduce_(flat)
        offset = 0
        for g in dense:
            k = g.numel()
            g.copy_(flat[offset : offset + k].view_as(g))
            offset += k


def current() -> DistContext | None:
    """The running process group as a :class:`DistContext`, or ``None`` (one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    backend = str(dist.get_backend())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    world = dist.get_world_size()
    same_host = os.environ.get("LOCAL_WORLD_SIZE") == str(world)
    return DistContext(dist.get_rank(), world, local, backend, device, shared_memory=same_host)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[DistContext | None]:
    """Join the process group torchrun describes (nothing when ``WORLD_SIZE`` is 1).

    gloo when ``device`` is ``"cpu"`` or CUDA is absent, NCCL otherwise; the group is
    destroyed on exit.

    Example:
        >>> with session("cpu") as ctx:
        ...     ctx is None
        True
    """
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():
        raise ConfigError("expected a PyTorch build with torch.distributed, received none")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"expected the torchrun environment (RANK, MASTER_ADDR, MASTER_PORT) with "
            f"WORLD_SIZE={env_world_size()}, received no {', '.join(missing)}; launch with "
            "torchrun or recfit train --nproc N"
        )
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"expected CUDA for device {device!r}, received a machine without it")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def _sum_hook(_state: Any, bucket: Any) -> torch.futures.Future[Tensor]:
    """DDP communication hook that sums (the Learner already scales by the global Σw)."""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()  # type: ignore[union-attr]
    out: torch.futures.Future[Tensor] = fut.then(lambda f: f.value()[0])
    return out


# DDP checks the hook's annotations as objects (this module's are strings)
_sum_hook.__annotations__ = {
    "_state": object,
    "bucket": dist.GradBucket,  # type: ignore[attr-defined]
    "return": torch.futures.Future[torch.Tensor],
}


def attach(learn: Learner, ctx: DistContext) -> Learner:
    """Make ``learn`` train and evaluate as one rank of ``ctx``.

    Parameters and buffers are broadcast from rank 0; the autograd path gets a
    :class:`~torch.nn.parallel.DistributedDataParallel` wrapper (summing hook); the
    fused path all-reduces its gradients itself. On CPU, a Learner without
    ``num_threads`` gets its share of this machine's cores (``LOCAL_WORLD_SIZE`` ranks
    share them), so the ranks do not oversubscribe the cores.
    """
    learn.dist = ctx
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if ctx.device.type == "cpu" and learn.execution.num_threads is None:
        share = max(1, cpu_cores() // max(1, local_world))
        learn.execution = dataclasses.replace(learn.execution, num_threads=share)
    with torch.no_grad():
        for t in [*learn.model.parameters(), *learn.model.buffers()]:
            dist.broadcast(t.data, src=0)
    if not learn.fused:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        ddp = DistributedDataParallel(learn.model, device_ids=ids)
        ddp.register_comm_hook(None, _sum_hook)
        learn.ddp = ddp
    return learn


def enable_bf16(learn: Learner) -> Learner:
    """bfloat16 autocast around the autograd forward pass; CUDA only.

    Raises:
        ConfigError: the Learner's device is not a CUDA device.

    Example:
        >>> # enable_bf16(learn)  # on a CUDA machine
    """
    if learn.device.type != "cuda":
        raise ConfigError(
            f"expected a CUDA device for bf16 autocast, received {str(learn.device)!r} "
            "(bf16 autocast is a GPU option; train without --bf16 on this machine)"
        )
    learn.bf16 = True
    return learn


# ------------------------------------------------------------------------ evaluation
def _shard_of(ctx: DistContext, data: Interactions) -> Interactions:
    hit = ctx._eval_cache.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    lo, hi = shard_range(len(data), ctx.rank, ctx.world)
    part = data.take(np.arange(lo, hi))
    ctx._eval_cache[id(data)] = (data, part)
    return part


def _gather(ctx: DistContext, arr: np.ndarray, n_total: int) -> np.ndarray:
    """Concatenate every rank's contiguous part of a per-row array (rank order)."""
    a = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    rows = max(hi - lo for lo, hi in (shard_range(n_total, r, ctx.world) for r in range(ctx.world)))
    pad = torch.zeros((rows, *a.shape[1:]), dtype=torch.float64)
    pad[: len(a)] = a
    pad = pad.to(ctx.device)
    parts = [torch.empty_like(pad) for _ in range(ctx.world)]
    dist.all_gather(parts, pad)
    out = []
    for r, p in enumerate(parts):
        lo, hi = shard_range(n_total, r, ctx.world)
        out.append(p[: hi - lo].cpu())
    return torch.cat(out).numpy()


def evaluate(learn: Learner, data: Interactions) -> dict[str, float]:
    """:meth:`Learner.evaluate` across the ranks, exactly (see the module docs).

    Every rank must call it with the same ``data``; every rank gets the same result.
    """
    ctx: DistContext = learn.dist
    part = _shard_of(ctx, data)
    pred, per_row, pen = outputs(learn, part, with_loss=True)
    assert per_row is not None
    w = part.weights().astype(np.float64)
    keep = w > 0
    wk = w[keep]
    p = pred.astype(np.float64)[keep]
    t = part.rating.astype(np.float64)[keep]
    err = p - t
    n_fb = float(learn.fallback(part)[keep].sum()) if learn.model.has_record else 0.0
    stats = torch.tensor(
        [
            wk.sum(),
            (wk * per_row[keep]).sum(),
            0.0 if pen is None else (wk * pen[keep]).sum(),
            (wk * err**2).sum(),
            (wk * np.abs(err)).sum(),
            (wk * t).sum(),
            n_fb,
        ],
        dtype=torch.float64,
    )
    total, s_loss, s_pen, s_se, s_ae, s_t, s_fb = ctx.all_reduce_(stats).tolist()
    ok = total > 0
    data_loss = s_loss / total if ok else math.nan
    reg_loss = 0.0
    if pen is not None:
        reg_loss = learn.reg * (s_pen / total) if ok else math.nan
    out: dict[str, float] = {"loss": data_loss + reg_loss, "reg_loss": reg_loss}
    if learn.model.has_record:  # rows answered by the baseline, as Learner.evaluate says
        out["n_fallback"] = s_fb
    names = list(learn.metric_fns)
    ss_tot = ss_raw = math.nan
    if "r2" in names:
        mean = s_t / total if ok else 0.0
        ss = torch.tensor([(wk * (t - mean) ** 2).sum(), (wk * t * t).sum()], dtype=torch.float64)
        ss_tot, ss_raw = ctx.all_reduce_(ss).tolist()
    gathered: dict[str, np.ndarray] = {}
    for name in names:
        if name == "mse":
            out[name] = s_se / total if ok else math.nan
        elif name == "rmse":
            out[name] = math.sqrt(s_se / total) if ok else math.nan
        elif name == "mae":
            out[name] = s_ae / total if ok else math.nan
        elif name == "r2":
            out[name] = r2_from_sums(s_se, ss_tot, ss_raw) if ok else math.nan
        else:  # metrics without a sum form: gather the predictions, then the function
            fn = learn.metric_fns[name]
            if is_level_metric(name):
                if "proba" not in gathered:
                    gathered["proba"] = _gather(ctx, learn.predict_proba(part), len(data))
                levels = learn.model.levels
                out[name] = fn(gathered["proba"], levels, data.rating, data.weight)  # type: ignore[call-arg]
            else:
                if "pred" not in gathered:
                    gathered["pred"] = _gather(ctx, pred, len(data)).astype(np.float32)
                out[name] = fn(gathered["pred"], data.rating, data.weight)  # type: ignore[call-arg]
    return out


# ------------------------------------------------------------------------ launching
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (bound to port 0, then released).

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(
    nproc: int, args: Sequence[str], *, port: int | None = None, python: str | None = None
) -> list[str]:
    """The ``torch.distributed.run`` (torchrun) command running ``recfit <args>`` on
    ``nproc`` local processes with a c10d rendezvous on ``127.0.0.1:<port>``.

    Example:
        >>> launch_command(2, ["train", "-q"], port=29500, python="python")[:4]
        ['python', '-m', 'torch.distributed.run', '--nnodes=1']
    """
    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"expected --nproc an integer >= 1, received {nproc!r}")
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port() if port is None else port}",
        "-m",
        "recfit",
        *args,
    ]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``recfit <args>`` under torchrun with ``nproc`` processes; its exit code.

    A Ctrl-C reaches the workers (they save a checkpoint and stop); this waits for them.
    """
    proc = subprocess.Popen(launch_command(nproc, args))
    interrupted = False
    while True:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            continue
        return 130 if interrupted and code != 0 else code
