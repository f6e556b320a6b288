"""The training core shared by distill, prune recovery and update: the loop (loop.py ``fit``, with
checkpoints and torchrun), teacher outputs cached once (cache.py), batches and augmentation
(batches.py), what a student is trained to match (objectives.py), a model's outputs on a dataset
and the held-out comparison (outputs.py), held-out splits (split.py), what a command writes
(write.py) and its typed report (report.py)."""

from edgeopt.train.cache import cached_outputs
from edgeopt.train.loop import TrainConfig, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "cached_outputs", "fit"]
