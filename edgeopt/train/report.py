"""Typed reports: frozen dataclasses whose ``to_json()`` is the command's OUT/report.json, key for
key and in the same order (bundles, run's cache and the recipe's report read those files). A field
made with ``omitted()`` is left out of the JSON while it is None, as an optional key is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

REPORT = "report.json"


def omitted():
    """A field that is absent from the JSON while it is None (default None)."""
    return dataclasses.field(default=None, metadata={"omit_none": True})


def jsonable(value):
    """A report value as JSON: typed parts through their ``to_json``, containers element-wise."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_json(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def fields_json(obj) -> dict:
    return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if not (f.metadata.get("omit_none") and getattr(obj, f.name) is None)}


class Report:
    """Mixin of the report dataclasses: ``to_json()`` in field order, omitted-while-None fields left out."""

    def to_json(self) -> dict:
        return fields_json(self)


def write_report(folder: Path, report: Report) -> Path:
    path = Path(folder) / REPORT
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path
