"""The same app on Flower's deployment engine: a Flower App folder that ``flwr run`` submits to a
SuperLink, whose SuperNodes (one per store, each naming its own file) run the ClientApp.

``write_app(job, folder)`` writes the folder's pyproject.toml: the components are edgeopt's
module-level apps (app.py), the run config carries the Job as JSON. The FAB Flower builds from it
holds only that file; every SuperLink / SuperNode machine needs edgeopt[federate] installed.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeopt.federate.job import Job


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def write_app(job: Job, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "edgeopt-federate"
version = "1.0.0"
dependencies = []  # edgeopt[federate] is installed where the SuperLink and SuperNodes run

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "edgeopt"

[tool.flwr.app.components]
serverapp = "edgeopt.federate.app:serverapp"
clientapp = "edgeopt.federate.app:clientapp"

[tool.flwr.app.config]
job = {_toml_string(json.dumps(job.to_json()))}
""")
    return folder
