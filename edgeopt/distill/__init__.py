"""``edgeopt distill``: knowledge distillation, teacher -> smaller student (run.py).

``edgeopt.distill(...)`` is run.distill: this package is callable (edgeopt.commands); ``from
edgeopt.distill import distill`` imports the function, lazily, so importing the package stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.distill.run", "distill")

_LAZY = {"distill", "DistillResult"}


def __getattr__(name: str):
    if name in _LAZY:
        from edgeopt.distill import run

        return getattr(run, name)
    raise AttributeError(f"module 'edgeopt.distill' has no attribute {name!r}")
