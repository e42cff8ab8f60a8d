"""Training: the Learner, batches, callbacks, schedules and the LR finder."""

from recfit.train.batches import TensorData, n_batches
from recfit.train.callbacks import (
    EVENTS,
    Callback,
    Checkpoint,
    CSVLogger,
    EarlyStopping,
    ProgressBar,
    ScheduleRecorder,
    TensorBoardLogger,
)
from recfit.train.imbalance import (
    ImbalanceStrategy,
    Resampled,
    class_weights,
    random_oversample,
    random_undersample,
    resample,
    row_vectors,
    smote,
)
from recfit.train.learner import OPTIMIZERS, Learner, resolve_device
from recfit.train.lr_finder import LRFinder, LRFinderResult, lr_find, suggest
from recfit.train.schedules import (
    CombinedCos,
    Constant,
    Cosine,
    Cyclic,
    Exponential,
    OneCycle,
    Schedule,
    one_cycle_momentum,
)

__all__ = [
    "EVENTS",
    "OPTIMIZERS",
    "CSVLogger",
    "Callback",
    "Checkpoint",
    "CombinedCos",
    "Constant",
    "Cosine",
    "Cyclic",
    "EarlyStopping",
    "Exponential",
    "ImbalanceStrategy",
    "LRFinder",
    "LRFinderResult",
    "Learner",
    "OneCycle",
    "ProgressBar",
    "Resampled",
    "Schedule",
    "ScheduleRecorder",
    "TensorBoardLogger",
    "TensorData",
    "class_weights",
    "lr_find",
    "n_batches",
    "one_cycle_momentum",
    "random_oversample",
    "random_undersample",
    "resample",
    "resolve_device",
    "row_vectors",
    "smote",
    "suggest",
]
