"""Top-k retrieval over a whole catalogue: exact (chunked) and approximate (faiss).

Both indexes follow the keras-rs shape: build one, give it the candidate embeddings with
:meth:`ExactIndex.update_candidates`, then call it with query embeddings to get
``(scores, ids)``, each an ``(n_queries, k)`` numpy array, best first.

Conventions shared by both indexes:

* **Scores.** ``metric="dot"`` scores a candidate by the dot product with the query;
  ``metric="cosine"`` by the cosine similarity (a zero vector scores 0 against anything).
* **Ties.** Ties are broken deterministically: higher score first, then the candidate
  that came first in :meth:`~ExactIndex.update_candidates` (lower position).
* **Exclusions.** ``exclude`` names, for each query, candidate *ids* that must never be
  returned (typically the user's training items). It is an
  :class:`ItemSets` (CSR: ``indptr``, ``indices``; ``Exclusions`` is the same class) or a
  list of one id array per query. Ids that are not candidates are ignored.
* **Padding.** When fewer than ``k`` candidates remain for a query (a catalogue smaller
  than ``k``, or too many exclusions), the trailing entries have id ``-1`` and score
  ``-inf``. Candidate ids must therefore be non-negative.
* **Inputs.** Embeddings and queries may be numpy arrays or torch tensors (CPU or CUDA);
  the exact index computes on the device its candidates live on and returns numpy.
"""

from recfit.index.approximate import ApproximateIndex
from recfit.index.exact import ExactIndex, top_k_of_scores
from recfit.index.inputs import Metric
from recfit.index.itemsets import Exclusions, ItemSets

__all__ = [
    "ApproximateIndex",
    "ExactIndex",
    "Exclusions",
    "ItemSets",
    "Metric",
    "top_k_of_scores",
]
