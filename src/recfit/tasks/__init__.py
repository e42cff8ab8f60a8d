"""Tasks: what a training run does for each kind of problem, behind one interface.

Each task (``rating``, ``classification``, ``retrieval``, ``topn``) is one module that registers a
:class:`~recfit.tasks.common.Task` in :data:`TASKS`: it makes a config concrete for the
data (``prepare``), builds the model inside a :class:`~recfit.train.learner.Learner`
(``build``), trains it (``fit``), measures it on the held-out part (``evaluate``) and
produces its own figures and files (``figures``, ``artefacts``).
:func:`recfit.runs.train_run` calls these steps for whichever task a config names.
:mod:`recfit.tasks.common` holds what they share: the data and split a config names, the
inner validation cut early stopping watches, the batch size and learning rate.

Verbs, across the public API:

* ``fit``: train a *given* model or learner in place (``Learner.fit``,
  ``Learner.fit_one_cycle``, :func:`~recfit.tasks.rating.fit_learner`,
  ``recfit.train.als.fit_als``);
* ``train_*``: go from a config or data to a result (:func:`recfit.runs.train_run`,
  :func:`~recfit.tasks.retrieval.train_retrieval`,
  :func:`~recfit.tasks.classification.train_classifier`).

Example:
    >>> sorted(TASKS)
    ['classification', 'rating', 'retrieval', 'topn']
"""

from recfit.tasks import classification, rating, retrieval, topn
from recfit.tasks.common import TASKS, Task, get_task, register_task

__all__ = [
    "TASKS",
    "Task",
    "classification",
    "get_task",
    "rating",
    "register_task",
    "retrieval",
    "topn",
]
