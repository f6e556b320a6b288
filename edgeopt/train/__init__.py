"""The training core shared by distill, prune recovery and update (see loop.py)."""

from edgeopt.train.cache import cached_outputs
from edgeopt.train.loop import TrainConfig, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "cached_outputs", "fit"]
