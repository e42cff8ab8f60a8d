"""The top-k indexes under their documented name; they live in :mod:`recfit.index`.

``recfit.retrieval.ExactIndex`` and ``recfit.index.ExactIndex`` are the same class. The index
sits below :mod:`recfit.metrics` (ranking metrics use :class:`ItemSets`), so the package
imports it from :mod:`recfit.index`; this module keeps the public path working.
"""

from __future__ import annotations

from recfit import index
from recfit.index import ApproximateIndex as ApproximateIndex
from recfit.index import ExactIndex as ExactIndex
from recfit.index import Exclusions as Exclusions
from recfit.index import ItemSets as ItemSets
from recfit.index import Metric as Metric

__all__ = index.__all__
