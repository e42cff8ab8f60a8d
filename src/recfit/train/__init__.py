"""Training: the trainers, the Learner, batches, callbacks, schedules and the LR finder."""

from recfit.train.als import ALSResult, fit_als
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
from recfit.train.checkpoint import (
    TrainCheckpoint,
    TrainingInterrupted,
    read_checkpoint,
    resume_config,
)
from recfit.train.execution import Execution
from recfit.train.imbalance import (
    ImbalanceStrategy,
    Resampled,
    class_weights,
    random_sample,
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
from recfit.train.sparse import RowAdamW, auto_batch_size, scaled_lr
from recfit.train.trainers import TRAINERS, FitSpec, Trainer, trainer_for

__all__ = [
    "EVENTS",
    "OPTIMIZERS",
    "TRAINERS",
    "ALSResult",
    "CSVLogger",
    "Callback",
    "Checkpoint",
    "CombinedCos",
    "Constant",
    "Cosine",
    "Cyclic",
    "EarlyStopping",
    "Execution",
    "Exponential",
    "FitSpec",
    "ImbalanceStrategy",
    "LRFinder",
    "LRFinderResult",
    "Learner",
    "OneCycle",
    "ProgressBar",
    "Resampled",
    "RowAdamW",
    "Schedule",
    "ScheduleRecorder",
    "TensorBoardLogger",
    "TensorData",
    "TrainCheckpoint",
    "Trainer",
    "TrainingInterrupted",
    "auto_batch_size",
    "class_weights",
    "fit_als",
    "lr_find",
    "n_batches",
    "one_cycle_momentum",
    "random_sample",
    "read_checkpoint",
    "resample",
    "resolve_device",
    "resume_config",
    "row_vectors",
    "scaled_lr",
    "smote",
    "suggest",
    "trainer_for",
]
