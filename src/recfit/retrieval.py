"""The top-k indexes under their documented name; they live in :mod:`recfit.index`.

``recfit.retrieval.ExactIndex`` and ``recfit.index.ExactIndex`` are the same class. The index
sits below :mod:`recfit.metrics` (ranking metrics use :class:`ItemSets`), so the package
imports it from :mod:`recfit.index`; this module keeps the public path working.
"""

from __future__ import annotations

from recfit.index import ApproximateIndex, ExactIndex, Exclusions, ItemSets, Metric

__all__ = [
    "ApproximateIndex",
    "ExactIndex",
    "Exclusions",
    "ItemSets",
    "Metric",
]
