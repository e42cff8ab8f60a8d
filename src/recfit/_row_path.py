"""Whether a rating fit may run the compiled row-wise step, from its settings alone.

No torch and nothing of recfit is imported here: ``recfit train`` asks before its imports
whether to compile the row-wise kernel in a separate process
(:func:`recfit._compile_ahead.start_for_command_line`), and
:meth:`recfit.tasks.rating.RatingTask.warm_up` asks the same question of a config
(:func:`may_run_row_kernel`).

A fit runs the compiled row-wise step when the model's family has a row-wise path
(:attr:`recfit.models.registry.Family.row_wise`; ``model="auto"`` may choose one), it
trains by SGD with row-wise AdamW or Adagrad and the MSE loss on the CPU, and the model
has at least :data:`SPARSE_MIN_PARAMS` parameters, ``(users + items) × (n_factors + 1)``
(smaller ones train on the dense path). ``model="auto"`` with a search (a ``budget``
other than 0, the default included) may tune ``n_factors`` up to
:data:`AUTO_MAX_FACTORS`, so its size counts with that many.

Example:
    >>> may_run_row_kernel(model="svdpp", trainer="sgd", opt="auto", loss="mse", cpu=True)
    False
    >>> [may_run_row_kernel(model="auto", trainer="sgd", opt="auto", loss="mse", cpu=True,
    ...                     rows=RELEASE_ROWS["ml-100k"], budget=b) for b in (None, 0)]
    [True, False]
"""

from __future__ import annotations

__all__ = [
    "AUTO_MAX_FACTORS",
    "RELEASE_ROWS",
    "ROW_WISE_FAMILIES",
    "SPARSE_MIN_PARAMS",
    "big",
    "may_run_row_kernel",
]

SPARSE_MIN_PARAMS = 250_000
"""Models with at least this many parameters use :class:`RowAdamW` by default."""

ROW_WISE_FAMILIES = frozenset({"dot", "mf"})
"""The rating families with a row-wise path, as the registry says (a test keeps them the
same) for a caller that cannot import the registry."""

AUTO_MAX_FACTORS = 256
"""The largest ``n_factors`` ``model="auto"``'s search tries for the row-wise families
(their search space's upper end; a test keeps them the same)."""

RELEASE_ROWS = {
    "ml-100k": 943 + 1682,
    "ml-1m": 6040 + 3706,
    "ml-10m": 69878 + 10677,
    "ml-20m": 138493 + 26744,
    "ml-25m": 162541 + 59047,
    "ml-latest-small": 610 + 9742,
}
"""Users plus items of the MovieLens releases that never change."""

ROW_WISE_OPTS = frozenset({"auto", "adam", "adagrad"})
"""The ``opt`` settings that train on the row-wise path (``auto`` picks row-wise Adagrad)."""


def big(rows: int, n_factors: int) -> bool:
    """Whether a dot model of ``rows`` users plus items and ``n_factors`` factors is big
    enough for the row-wise path (at least :data:`SPARSE_MIN_PARAMS` parameters).

    Example:
        >>> big(RELEASE_ROWS["ml-100k"], 50), big(RELEASE_ROWS["ml-1m"], 50)
        (False, True)
    """
    return rows * (n_factors + 1) >= SPARSE_MIN_PARAMS


def may_run_row_kernel(
    *,
    model: str,
    trainer: str,
    opt: str,
    loss: str,
    cpu: bool,
    row_wise: bool | None = None,
    rows: int | None = None,
    n_factors: int = 50,
    budget: float | None = None,
) -> bool:
    """Whether a rating fit of these settings may run the compiled row-wise step.

    ``row_wise``: whether the family ``model`` has a row-wise path (``None``: whether it
    is one of :data:`ROW_WISE_FAMILIES`); ``rows``: the data's users plus items, when
    known (``None``: the model may be big enough); ``budget``: ``model="auto"``'s search
    budget (``None``: the default, by size; 0: no search, the size rule's family with
    ``n_factors``).
    """
    if row_wise is None:
        row_wise = model in ROW_WISE_FAMILIES
    if model == "auto" and budget != 0:  # the search may try up to AUTO_MAX_FACTORS
        n_factors = max(n_factors, AUTO_MAX_FACTORS)
    return (
        (model == "auto" or row_wise)
        and trainer == "sgd"
        and opt in ROW_WISE_OPTS
        and loss == "mse"
        and cpu
        and (rows is None or big(rows, n_factors))
    )
