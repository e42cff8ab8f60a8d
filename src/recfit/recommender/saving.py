"""A model as a file to keep or hand over: always a bundle.

:func:`save_model` writes a trained model with what it needs to answer in raw ids (the
vocabularies, each user's training items, titles and rating scale of the training
data) as a bundle folder, the one user-facing model format: :meth:`Recommender.load
<recfit.recommender.Recommender.load>`, ``recfit serve`` and ``recfit recommend`` read it.
:func:`load_model` reads the model back from a bundle or a run directory, through the
same checks as ``Recommender.load``.

A file from the earlier single-file format (one ``.safetensors`` with the model's config
in its metadata, no vocabularies) is read by :func:`load_model` through the bundle's own
checked model reader (header, sizes and config checked before any weight is allocated),
so that it can be re-saved as a bundle; ``Recommender.load`` and the command line refuse
it with a :class:`~recfit.errors.BundleError` saying so. Training checkpoints
(``RUN/checkpoint.safetensors``: weights plus optimiser state, for ``recfit train
--resume``) are a different thing and are never read here.

Example:
    >>> import tempfile
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> d = Interactions.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0])
    >>> m = create_model("mf", d, n_factors=2)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_model(m, f"{tmp}/mf", d)
    ...     back = load_model(path)
    ...     answers = Recommender.load(path).recommend(2, n=1)[0].ids
    >>> back.config() == m.config(), answers
    (True, [20])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recfit._fs import read_plain_file
from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import RatingModel
from recfit.recommender.bundle import single_file_kind
from recfit.recommender.core import Recommender
from recfit.recommender.tensors import load_model_bytes

__all__ = ["MAX_SINGLE_FILE_BYTES", "load_model", "save_model"]

MAX_SINGLE_FILE_BYTES = 1 << 34
"""Largest single-file model :func:`load_model` reads (16 GiB)."""


def save_model(model: RatingModel, path: str | Path, data: Interactions, **options: Any) -> Path:
    """Save ``model`` as a bundle folder at ``path`` (atomically; see
    :meth:`Recommender.save <recfit.recommender.Recommender.save>`).

    Args:
        model: the trained model.
        path: the bundle folder (empty, missing, or a bundle it replaces).
        data: the training interactions: their vocabularies index the model, their
            rows are each user's seen items, and their ``item_features`` (titles, years,
            genres) and ``rating_scale`` go with the model.
        options: other :class:`~recfit.recommender.Recommender` arguments (``config``,
            ``fold_in_reg``, ``min_item_count`` ...).

    Returns:
        ``path``.

    Raises:
        ConfigError: ``data`` is not Interactions, or the model's sizes differ from the
            vocabularies'.
        BundleError: ``path`` holds other files, or a weight is NaN or infinite.
    """
    if not isinstance(data, Interactions):
        raise ConfigError(
            f"expected the training Interactions as data, received {type(data).__name__}"
        )
    options.setdefault("item_info", data.item_features)
    options.setdefault("rating_scale", data.prediction_scale())
    rec = Recommender(model, data.users, data.items, data, **options)
    return rec.save(path)


def load_model(path: str | Path) -> RatingModel:
    """The model of a bundle folder or run directory, every file checked as
    :meth:`Recommender.load <recfit.recommender.Recommender.load>` checks it; or of a
    file in the earlier single-file format (checked the same way), to re-save it with
    :func:`save_model`.

    Raises:
        BundleError: missing, damaged, altered, inconsistent or of another format.
    """
    p = Path(path)
    if single_file_kind(p) == "model":
        data = read_plain_file(p.parent, p.name, max_bytes=MAX_SINGLE_FILE_BYTES)
        return load_model_bytes(data, str(p))
    return Recommender.load(p).model
