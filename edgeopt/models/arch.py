"""Resolve ``--arch module.path:factory`` (or ``path/to/file.py:factory``) into a model instance."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from edgeopt.errors import UsageError, first_line


def parse_kwargs(text: str | None, flag: str = "--arch-kwargs") -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{flag} is not valid JSON ({e.msg}); example: '{{\"num_classes\": 10}}'") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def resolve_factory(spec: str):
    """Import the callable named by ``module.path:factory``; the current folder is importable."""
    if ":" not in spec:
        raise UsageError(f"--arch {spec!r} is not MODULE:FACTORY (example: mypkg.models:resnet18)")
    mod_name, _, attr = spec.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise UsageError(f"--arch: no such file {mod_name}")
            mspec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UsageError(f"--arch {spec!r}: cannot import {mod_name} ({first_line(e)}); is it on PYTHONPATH?") from None
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - importing the user's module ran their code, which failed
        raise UsageError(f"--arch {spec!r}: importing {mod_name} raised {type(e).__name__}: {first_line(e)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--arch {spec!r}: {mod_name} has no callable {attr!r}")
    return factory


def build_from_arch(spec: str, kwargs: dict):
    import torch

    factory = resolve_factory(spec)
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise UsageError(f"--arch {spec!r} rejected --arch-kwargs {kwargs}: {first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - the user's factory failed: their code, not edgeopt's
        raise UsageError(f"--arch {spec!r} raised {type(e).__name__} when called with {kwargs or 'no kwargs'}: "
                         f"{first_line(e)}; fix the factory or --arch-kwargs") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--arch {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model
