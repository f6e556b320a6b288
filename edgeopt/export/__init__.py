"""Export a loaded model to deployable artifacts, verify each, and write OUT/manifest.json.

``edgeopt.export(model, out, ...)`` is api.export: this package is callable (edgeopt.commands)."""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.export.api", "export")
