"""The model-family registry: what each family is, in one place, looked up by name or model.

A *family* is what the config's ``model`` names (``"dot"``, ``"mf"``, ``"svdpp"``,
``"nn"``, ``"classifier"``, ``"two_tower"``...). Its :class:`Family` entry says everything
the layers above need to know about it, so none of them tests a concrete model class:

* the task it serves and what its predictions are (``output``: ``"rating"`` or
  ``"score"``);
* the config fields its model reads (``reads``) and the defaults it brings
  (``defaults``): the config validates and fills settings from them;
* how to build it from those settings and the training data (``build``);
* how it trains (``trainers``, the first the default: ``"sgd"`` the Learner, ``"als"``
  alternating least squares, ``"closed_form"`` its own ``closed_form`` fit), whether it
  can train on the row-wise compiled path (``row_wise``);
* which recommender adapter answers queries with it (``adapter``).

Each family registers itself in its own module with :func:`register_family`; the
modules are imported by one line of :mod:`recfit.models` (the *registry line*), so
importing anything from :mod:`recfit.models` fills the registry.

Example:
    >>> from recfit.data import Interactions
    >>> fam = family("mf")
    >>> fam.task, fam.output, fam.trainers, fam.adapter
    ('rating', 'rating', ('sgd', 'als'), 'dot')
    >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
    >>> m = fam.build({"n_factors": 4, "seed": 0}, d)
    >>> family_of(m).name, "mf" in [f.name for f in families("rating")]
    ('mf', True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import OutputKind, RatingModel
from recfit.models.search import Param

__all__ = [
    "KERNEL_SETS",
    "TASKS",
    "TRAINERS",
    "Family",
    "TaskName",
    "TrainerName",
    "WarmUp",
    "build_model",
    "families",
    "family",
    "family_of",
    "find_family",
    "mean_rating",
    "register_family",
    "sized_build",
    "unregister_family",
]

TaskName = Literal["rating", "classification", "retrieval", "topn"]
"""The tasks a family can serve."""
TASKS: tuple[str, ...] = get_args(TaskName)

TrainerName = Literal["sgd", "als", "closed_form"]
"""How a family can be trained: the Learner (``sgd``: dense, fused or row-wise),
alternating least squares (``als``) or the family's own exact fit (``closed_form``)."""
TRAINERS: tuple[str, ...] = get_args(TrainerName)

KERNEL_SETS = ("row_step", "dense_epoch")
"""The Learner's compiled (numba) kernels a family's fits may use (:attr:`Family.kernels`):
the row-wise step and the dense epochs; :mod:`recfit.train.precompile` compiles them ahead
of the fits. A family's own kernels are compiled by its :attr:`Family.warm_up`."""

WarmUp = Callable[[str, torch.device], object]
"""``warm_up(trainer, device)``: compile (or load from numba's cache) the kernels a fit of
the family by ``trainer`` on ``device`` will use, for the very argument types the fit
passes (so the fit runs the same machine code: the same weights); nothing where they do
not run."""

Build = Callable[[Mapping[str, Any], Interactions], RatingModel]
ClosedForm = Callable[[RatingModel, Interactions], None]


@dataclass(frozen=True)
class Family:
    """One model family (see the module documentation).

    Attributes:
        name: the config's ``model`` value.
        task: the task it serves.
        model_class: the model's class (its instances are this family's models).
        output: ``"rating"`` (the data's units) or ``"score"`` (a ranking score); equal
            to ``model_class.output_kind``.
        reads: the config fields the model itself reads (passed to ``build``).
        trainers: the trainers it supports, the first the default.
        adapter: the key of its recommender adapter (``"generic"``: through ``forward``).
        defaults: config defaults it brings (keys given explicitly win).
        build: ``build(settings, train) -> model``: ``settings`` holds values of
            config fields (any subset of ``reads``; missing ones take the model's own
            defaults) and any other constructor argument by name; the model is sized
            for ``train``'s vocabularies and records its training rows.
        row_wise: it can train on the row-wise compiled path (:mod:`recfit.train.sparse`).
        closed_form: for trainer ``closed_form``: ``closed_form(model, train)`` fits
            the model in place.
        summary: one line saying what the family is (for listings and docs).
        search: the config fields worth tuning and their ranges
            (:class:`~recfit.models.search.Param`), read by ``recfit tune`` and
            ``model="auto"``; empty: nothing to tune.
        anytime: its fit ends by a deadline with a valid model when it must (fewer
            samples or epochs, :mod:`recfit.models._budget`) and records how much ran;
            ``model="auto"`` tries it last, sharing what its budget has left.
        costly: its default fit is slow for what it usually gains: ``model="auto"``
            tries it after the other families (but before the ``anytime`` ones).
        kernels: the Learner's compiled kernels its fits use (:data:`KERNEL_SETS`), which
            :func:`recfit.train.precompile.compile_families` compiles (or loads from
            numba's cache) before a clock starts (``model="auto"``: before its budget's);
            empty: none.
        warm_up: compiles the family's own kernels ahead of a fit (:data:`WarmUp`; the
            same callable is run once per :func:`~recfit.train.precompile.compile_families`);
            ``None``: it has none.
    """

    name: str
    task: TaskName
    model_class: type[RatingModel]
    output: OutputKind
    reads: frozenset[str]
    trainers: tuple[str, ...]
    adapter: str
    defaults: Mapping[str, Any]
    build: Build
    row_wise: bool = False
    closed_form: ClosedForm | None = None
    summary: str = ""
    search: Mapping[str, Param] = field(default_factory=dict)
    anytime: bool = False
    costly: bool = False
    kernels: tuple[str, ...] = ()
    warm_up: WarmUp | None = None

    @property
    def fused(self) -> bool:
        """Whether its model supplies an analytic gradient (``fused_forward`` /
        ``fused_backward``) that the Learner uses instead of autograd."""
        return bool(self.model_class.supports_fused)

    def settings(self, config: Any) -> dict[str, Any]:
        """The values of the fields this family reads, from a config object or mapping
        (fields it lacks are left out), ready for :attr:`build`.

        Example:
            >>> family("mf").settings({"n_factors": 8, "seed": 1, "lr": 0.1})
            {'n_factors': 8, 'seed': 1}
        """
        out: dict[str, Any] = {}
        for name in sorted(self.reads):
            if isinstance(config, Mapping):
                if name in config:
                    out[name] = config[name]
            elif hasattr(config, name):
                out[name] = getattr(config, name)
        return out


_FAMILIES: dict[str, Family] = {}
_BY_CLASS: dict[type[RatingModel], Family] = {}


def register_family(f: Family) -> Family:
    """Add ``f`` to the registry (its model class learns its name: ``registry_name``).

    Registering the same family again (a module reloaded) replaces it; another family
    under a taken name or model class is an error.

    Raises:
        ConfigError: an inconsistent entry (unknown task, trainer, output kind or kernel set, an
            output that is not the model class's, ``closed_form`` without its callable, a
            ``warm_up`` that is not callable),
            or a name or class already taken by another family.
    """
    where = f"family {f.name!r}"
    if not f.name or not isinstance(f.name, str):
        raise ConfigError(f"expected a family name, received {f.name!r}")
    if f.task not in TASKS:
        raise ConfigError(f"expected a task among {list(TASKS)} for {where}, received {f.task!r}")
    if not isinstance(f.model_class, type) or not issubclass(f.model_class, RatingModel):
        raise ConfigError(
            f"expected a RatingModel subclass for {where}, received {f.model_class!r}"
        )
    if f.output != f.model_class.output_kind:
        raise ConfigError(
            f"expected output {f.model_class.output_kind!r} (the output_kind of "
            f"{f.model_class.__name__}) for {where}, received {f.output!r}"
        )
    bad = [t for t in f.trainers if t not in TRAINERS]
    if not f.trainers or bad:
        raise ConfigError(
            f"expected trainers among {list(TRAINERS)} for {where}, received {list(f.trainers)}"
        )
    if ("closed_form" in f.trainers) != (f.closed_form is not None):
        raise ConfigError(
            f"expected a closed_form callable exactly when trainer 'closed_form' is listed "
            f"for {where}, received trainers {list(f.trainers)} and closed_form "
            f"{f.closed_form!r}"
        )
    wrong = sorted(k for k, v in f.search.items() if not isinstance(v, Param))
    if wrong:
        raise ConfigError(
            f"expected a recfit.models.search.Param for each search entry of {where}, "
            f"received {', '.join(f'{k}={f.search[k]!r}' for k in wrong)}"
        )
    unknown = [k for k in f.kernels if k not in KERNEL_SETS]
    if unknown:
        raise ConfigError(
            f"expected kernel sets among {list(KERNEL_SETS)} for {where}, received {unknown}"
        )
    if f.warm_up is not None and not callable(f.warm_up):
        raise ConfigError(
            f"expected a callable warm_up(trainer, device) or None for {where}, "
            f"received {f.warm_up!r}"
        )
    old = _FAMILIES.get(f.name)
    if old is not None and old.model_class.__qualname__ != f.model_class.__qualname__:
        raise ConfigError(
            f"expected a new family name, received {f.name!r} already registered for "
            f"{old.model_class.__name__}"
        )
    other = _BY_CLASS.get(f.model_class)
    if other is not None and other.name != f.name:
        raise ConfigError(
            f"expected one family per model class, received {f.model_class.__name__} for "
            f"{f.name!r} and {other.name!r}"
        )
    if old is not None:
        _BY_CLASS.pop(old.model_class, None)
    f.model_class.registry_name = f.name
    _FAMILIES[f.name] = f
    _BY_CLASS[f.model_class] = f
    return f


def unregister_family(name: str) -> Family:
    """Remove the family ``name`` (for tests and plug-ins); returns it.

    Raises:
        ConfigError: no family of that name.
    """
    f = family(name)
    del _FAMILIES[name]
    _BY_CLASS.pop(f.model_class, None)
    return f


def family(name: str) -> Family:
    """The family registered as ``name``.

    Raises:
        ConfigError: an unknown name, listing the known ones.

    Example:
        >>> family("svdpp").defaults["epochs"]
        6
    """
    f = _FAMILIES.get(name) if isinstance(name, str) else None
    if f is None:
        raise ConfigError(f"expected a model name among {sorted(_FAMILIES)}, received {name!r}")
    return f


def families(task: TaskName | None = None) -> list[Family]:
    """Every registered family (of ``task`` only, when given), in registration order.

    Example:
        >>> [f.name for f in families("retrieval")]
        ['two_tower']
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"expected a task among {list(TASKS)}, received {task!r}")
    return [f for f in _FAMILIES.values() if task is None or f.task == task]


def find_family(model: Any) -> Family | None:
    """The family of ``model`` (its class, else the nearest registered base class), or
    ``None`` for an object of no registered family."""
    for cls in type(model).__mro__:
        f = _BY_CLASS.get(cls)
        if f is not None:
            return f
    return None


def family_of(model: Any) -> Family:
    """The family of ``model``: its class's entry, else its nearest registered base class
    (a subclass of a family's model belongs to that family).

    Raises:
        ConfigError: ``model`` belongs to no registered family.

    Example:
        >>> from recfit.models import BiasedMF, DotBias
        >>> family_of(BiasedMF(2, 2, 1)).name, family_of(DotBias(2, 2, 1)).name
        ('mf', 'dot')
    """
    f = find_family(model)
    if f is None:
        raise ConfigError(
            f"expected a model of a registered family ({', '.join(sorted(_FAMILIES))}), "
            f"received {type(model).__name__}"
        )
    return f


def record_training_of(model: RatingModel, train: Interactions) -> RatingModel:
    """Record ``train``'s rows in ``model`` (:meth:`RatingModel.record_training`) when its
    family keeps a training record (rating families); returns ``model``."""
    if hasattr(model, "train_user_count"):
        model.record_training(train.user, train.item, train.rating, train.weights())
    return model


def sized_build(
    cls: type[RatingModel],
    prepare: Callable[[dict[str, Any], Interactions], None] | None = None,
    finish: Callable[[Any, Interactions], None] | None = None,
) -> Build:
    """A ``build`` for a model class constructed as ``cls(n_users, n_items, **settings)``.

    ``prepare(kwargs, train)`` may fill data-dependent arguments first (e.g. the mean
    rating); the model records ``train``'s rows, then ``finish(model, train)`` may store
    data in it (e.g. SVD++'s lists) or start from its record (``mf``'s biases).

    Example:
        >>> from recfit.models import DotBias
        >>> from recfit.data import Interactions
        >>> d = Interactions.from_arrays([1, 2], [7, 8], [4.0, 2.0])
        >>> sized_build(DotBias)({"n_factors": 3}, d).user_factors.shape
        torch.Size([2, 3])
    """

    def build(settings: Mapping[str, Any], train: Interactions) -> RatingModel:
        kw: dict[str, Any] = {"n_users": train.n_users, "n_items": train.n_items, **settings}
        if prepare is not None:
            prepare(kw, train)
        try:
            model = cls(**kw)
        except TypeError as e:
            raise ConfigError(
                f"expected valid arguments for {cls.__name__}, received {sorted(kw)}: {e}"
            ) from e
        record_training_of(model, train)
        if finish is not None:
            finish(model, train)
        return model

    return build


def weighted_mean(train: Interactions) -> float:
    """The mean training rating weighted by the rows' weights (0 without weight)."""
    w = train.weights()
    return float(np.average(train.rating, weights=w)) if w.sum() > 0 else 0.0


def mean_rating(kwargs: dict[str, Any], train: Interactions) -> None:
    """A ``prepare`` for :func:`sized_build`: ``global_mean`` defaults to the weighted
    mean training rating."""
    kwargs.setdefault("global_mean", weighted_mean(train))


def build_model(config: Mapping[str, Any]) -> RatingModel:
    """Rebuild a model (fresh weights) from ``config`` as returned by ``model.config()``:
    the class of the family ``config["name"]`` with the other keys as arguments (what
    loading a saved model or a bundle does; no data is read, nothing is recorded).

    Raises:
        ConfigError: an unknown family name, or arguments its class does not take.

    Example:
        >>> build_model({"name": "dot", "n_users": 2, "n_items": 3}).n_factors
        50
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    if not isinstance(name, str) or name not in _FAMILIES:
        raise ConfigError(
            f"expected a model name among {sorted(_FAMILIES)}, received {name!r} (config 'name')"
        )
    try:
        return _FAMILIES[name].model_class(**cfg)
    except TypeError as e:
        raise ConfigError(
            f"expected valid arguments for model {name!r}, received {cfg!r}: {e}"
        ) from e
