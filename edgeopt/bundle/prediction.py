"""The library side of `edgeopt predict`: edgeopt.runtime on texts or an .npz of feeds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeopt.errors import UsageError


@dataclass
class PredictResult:
    model: dict  # Model.describe(): name, version, artifact, runtime, what it passed over
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                                                     "data": v.tolist()} for k, v in self.outputs.items()}}


def predict(*, bundle: str | os.PathLike, texts: list[str] | None = None, input_file: str | os.PathLike | None = None,
            runtime: str | None = None, public_key: str | os.PathLike | None = None) -> PredictResult:
    from edgeopt.runtime import BundleError, load

    if bool(texts) == (input_file is not None):
        raise UsageError("give either --text (one or more) or --input F.npz")
    feeds = None
    if input_file is not None:
        path = Path(input_file)
        if not path.is_file() or path.suffix != ".npz":
            raise UsageError(f"--input {path}: expected an existing .npz file keyed by input name")
        try:
            with np.load(path, allow_pickle=False) as f:
                feeds = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise UsageError(f"--input {path} is not a readable .npz ({e})") from None
    try:
        model = load(bundle, runtime=runtime, public_key=public_key)
        if feeds is None:
            feeds = model.tokenize(texts)
        outputs = model.run(feeds)
    except BundleError as e:
        raise UsageError(str(e)) from None
    return PredictResult(model.describe(), outputs)
