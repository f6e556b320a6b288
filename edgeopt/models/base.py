"""What a loaded model looks like to the rest of edgeopt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeopt.spec import IOSpec

Feeds = dict[str, np.ndarray]


@dataclass
class LoadedModel:
    """A source model, ready to export and to serve as the numerical reference.

    ``module`` is what the ONNX exporter takes: an ``nn.Module`` whose positional ``forward``
    arguments follow ``io.inputs`` and which returns a tuple in ``io.outputs`` order, a TorchScript
    module, or a ``torch.export.ExportedProgram``. ONNX sources have ``module=None`` and
    ``onnx_path`` set.
    """

    name: str
    source: Path
    family: str  # hf | sentence-transformers | pt2 | torchscript | state_dict | pickle | onnx
    io: IOSpec
    module: Any = None
    onnx_path: Path | None = None
    tokenizer: Any = None  # a transformers tokenizer for text models
    max_length: int | None = None
    reference: Callable[[Feeds], Feeds] | None = None
    sample_feeds: Callable[[], list[Feeds]] = field(default=lambda: [])
    metadata: dict = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None


def model_name(path: Path) -> str:
    """A folder called 'model' (as packaged models often are) is named after its parent."""
    return path.parent.name if path.name.lower() in ("model", "models", "") else path.name
