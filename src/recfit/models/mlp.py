"""EmbeddingNN: concatenated user/item embeddings through an MLP (fastai's TabularModel).

Layer order follows fastai's ``TabularModel`` (``lin_first=True``): for each hidden size
``Linear(bias=not batch_norm) → ReLU → BatchNorm1d → Dropout``, then ``Linear(…, 1)``,
then the optional ``y_range`` sigmoid. Embedding widths follow fastai's ``emb_sz_rule``.

Example:
    >>> import torch
    >>> m = EmbeddingNN(10, 20, layers=(8,))
    >>> m.emb_sizes
    [(10, 6), (20, 9)]
    >>> m.eval()(dict(user=torch.tensor([1, 2]), item=torch.tensor([3, 4]))).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from recfit.errors import ConfigError
from recfit.models.base import Batch, RatingModel, squash
from recfit.models.dot import _check_range, _trunc_normal
from recfit.models.registry import Family, register_family, sized_build
from recfit.models.search import SGD_SEARCH, Param

__all__ = [
    "EmbeddingBody",
    "EmbeddingNN",
    "emb_sz_rule",
    "hidden_layers",
]


def emb_sz_rule(n: int) -> int:
    """fastai's embedding width for a vocabulary of ``n``: ``min(600, round(1.6 n^0.56))``.

    Example:
        >>> emb_sz_rule(944), emb_sz_rule(1665)
        (74, 102)
    """
    return int(min(600, round(1.6 * n**0.56)))


def hidden_layers(
    n_in: int, sizes: Sequence[int], dropouts: Sequence[float], batch_norm: bool
) -> tuple[list[nn.Module], int]:
    """fastai's hidden block per size: Linear → ReLU (→ BatchNorm) (→ Dropout).

    Returns the modules and the width of the last one (``n_in`` when there are none).

    Example:
        >>> mods, width = hidden_layers(8, [4], [0.1], batch_norm=True)
        >>> [type(m).__name__ for m in mods], width
        (['Linear', 'ReLU', 'BatchNorm1d', 'Dropout'], 4)
    """
    mods: list[nn.Module] = []
    for n_out, p in zip(sizes, dropouts, strict=True):
        mods += [nn.Linear(n_in, n_out, bias=not batch_norm), nn.ReLU(inplace=True)]
        if batch_norm:
            mods.append(nn.BatchNorm1d(n_out))
        if p:
            mods.append(nn.Dropout(p))
        n_in = n_out
    return mods, n_in


class EmbeddingBody(RatingModel):
    """Base of the models that concatenate a user and an item embedding and feed them to
    an MLP (:class:`EmbeddingNN`, :class:`~recfit.models.RatingClassifier`)."""

    n_users: int
    n_items: int
    emb_sizes: list[tuple[int, int]]
    layers_: list[int]
    dropout_: list[float]
    emb_dropout: float
    batch_norm: bool
    seed: int
    user_emb: nn.Parameter
    item_emb: nn.Parameter
    emb_drop: nn.Dropout

    def _init_body(
        self,
        n_users: int,
        n_items: int,
        emb_sizes: Sequence[int] | None,
        layers: Sequence[int],
        dropout: float | Sequence[float],
        emb_dropout: float,
        batch_norm: bool,
        seed: int,
    ) -> tuple[list[nn.Module], int, torch.Generator]:
        """Check the settings and create the embedding part.

        Stores ``n_users``, ``n_items``, ``emb_sizes`` (``[(n, width)]`` per side, widths
        by :func:`emb_sz_rule` unless given), ``layers_``, ``dropout_`` (one per layer),
        ``emb_dropout``, ``batch_norm`` and ``seed``; creates the ``user_emb`` and
        ``item_emb`` tables (fastai's truncated normal, std 0.01) and ``emb_drop``.
        Returns the hidden layers (:func:`hidden_layers`, initialised under
        ``torch.manual_seed(seed)``: call it inside ``torch.random.fork_rng``), their
        output width, and the generator that drew the tables (for further tables).

        Raises:
            ConfigError: a size below 1, or not one dropout per layer.
        """
        for name, v in (("n_users", n_users), ("n_items", n_items)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"expected {name} an integer >= 1, received {v!r}")
        sizes = (
            [emb_sz_rule(n_users), emb_sz_rule(n_items)]
            if emb_sizes is None
            else [int(s) for s in emb_sizes]
        )
        if len(sizes) != 2 or min(sizes) < 1:
            raise ConfigError(f"expected emb_sizes (user, item) >= 1, received {emb_sizes!r}")
        hidden = [int(n) for n in layers]
        if any(n < 1 for n in hidden):
            raise ConfigError(f"expected hidden layer sizes >= 1, received {list(layers)!r}")
        drops = (
            [float(dropout)] * len(hidden)
            if isinstance(dropout, int | float)
            else [float(p) for p in dropout]
        )
        if len(drops) != len(hidden):
            raise ConfigError(
                f"expected {len(hidden)} dropout values (one per layer), received {len(drops)}"
            )
        self.n_users, self.n_items = n_users, n_items
        self.emb_sizes = [(n_users, sizes[0]), (n_items, sizes[1])]
        self.layers_, self.dropout_, self.emb_dropout = hidden, drops, float(emb_dropout)
        self.batch_norm, self.seed = batch_norm, seed
        g = torch.Generator().manual_seed(seed)
        self.user_emb = nn.Parameter(_trunc_normal((n_users, sizes[0]), 0.01, g))
        self.item_emb = nn.Parameter(_trunc_normal((n_items, sizes[1]), 0.01, g))
        self.emb_drop = nn.Dropout(emb_dropout)
        torch.manual_seed(seed)
        mods, n_in = hidden_layers(sizes[0] + sizes[1], hidden, drops, batch_norm)
        return mods, n_in, g

    def _body_config(self, **fields: Any) -> dict[str, Any]:
        """``config()``: the name, sizes and embedding/MLP settings, then ``fields``."""
        return self._config(
            emb_sizes=[self.emb_sizes[0][1], self.emb_sizes[1][1]],
            layers=list(self.layers_),
            dropout=list(self.dropout_),
            emb_dropout=self.emb_dropout,
            batch_norm=self.batch_norm,
            seed=self.seed,
            **fields,
        )

    def embeddings(self, batch: Batch) -> list[Tensor]:
        """The looked-up user and item embedding rows of ``batch``."""
        return [
            self.user_emb.index_select(0, batch["user"]),
            self.item_emb.index_select(0, batch["item"]),
        ]


class EmbeddingNN(EmbeddingBody):
    """Embeddings → MLP → one output, optionally squashed into ``y_range``.

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        emb_sizes: ``(user_width, item_width)``; default by :func:`emb_sz_rule`.
        layers: hidden layer sizes.
        dropout: dropout after each hidden layer (one float or one per layer).
        emb_dropout: dropout on the concatenated embeddings.
        batch_norm: batch norm after each hidden activation.
        y_range: ``(lo, hi)`` in rating units or ``None``.
        seed: seed of the initialisation.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        emb_sizes: Sequence[int] | None = None,
        layers: Sequence[int] = (100,),
        dropout: float | Sequence[float] = 0.0,
        emb_dropout: float = 0.0,
        batch_norm: bool = True,
        y_range: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.y_range = _check_range(y_range)
        args = (n_users, n_items, emb_sizes, layers, dropout, emb_dropout, batch_norm, seed)
        with torch.random.fork_rng(devices=[]):
            mods, n_in, _ = self._init_body(*args)
            mods.append(nn.Linear(n_in, 1))
        self.mlp = nn.Sequential(*mods)
        self._register_record(n_users, n_items)

    def config(self) -> dict[str, Any]:
        return self._body_config(y_range=None if self.y_range is None else list(self.y_range))

    def forward(self, batch: Batch) -> Tensor:
        x = torch.cat(self.embeddings(batch), dim=1)
        return squash(self.mlp(self.emb_drop(x)).squeeze(1), self.y_range)

    def penalty(self, batch: Batch) -> Tensor:
        """Sum of squares of the looked-up user and item embedding rows."""
        pu, qi = self.embeddings(batch)
        return (pu * pu).sum(1) + (qi * qi).sum(1)


register_family(Family(
    name="nn", task="rating", model_class=EmbeddingNN, output="rating",
    reads=frozenset({"layers", "dropout", "batch_norm", "y_range", "seed"}),
    trainers=("sgd",), adapter="nn", costly=True,
    defaults={}, build=sized_build(EmbeddingNN),
    search={
        "layers": Param(choices=((100,), (200,), (200, 100), (64, 32))),
        "dropout": Param(0.0, 0.5),
        **SGD_SEARCH,
    },
    summary="fastai's collab EmbeddingNN: concatenated embeddings through an MLP",
))  # fmt: skip
