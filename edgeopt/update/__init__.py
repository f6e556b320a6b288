"""``edgeopt update``: incremental updates that learn new data without forgetting the old (run.py).

``edgeopt.update(...)`` is run.update: this package is callable (edgeopt.commands); ``from
edgeopt.update import update`` imports the function, lazily, so importing the package stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.update.run", "update")

_LAZY = {"update", "UpdateResult"}


def __getattr__(name: str):
    if name in _LAZY:
        from edgeopt.update import run

        return getattr(run, name)
    raise AttributeError(f"module 'edgeopt.update' has no attribute {name!r}")
