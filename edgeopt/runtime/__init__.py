"""The device runtime: what runs in the store.

``load(PATH)`` takes a bundle (``.edgepkg``), an installed folder (``DEST/<name>`` or
``DEST/<name>/current``) or an export folder, checks its files against the manifest, picks the best
inference runtime present (a TensorRT engine built for this GPU, then OpenVINO, then ONNX Runtime)
and says why it fell back. ``Model.run(feeds)`` and, for text models, ``Model.embed(texts)`` with
the packaged tokenizer.

Lean on purpose: importing this package pulls in numpy and, at ``load``, exactly one inference
runtime (plus the ``tokenizers`` library on the first ``embed``); nothing else from edgeopt, no
torch, no click (tests/test_runtime_lean.py proves it). It reads the manifest itself instead of
through ``edgeopt.manifest``, so it can ship alone to a device.
"""

from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.model import Model, load

__all__ = ["BundleError", "Model", "load"]
