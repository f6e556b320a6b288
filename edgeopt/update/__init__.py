"""``edgeopt update``: incremental updates that learn new data without forgetting the old (run.py).

``edgeopt.update(...)`` is run.update, and ``from edgeopt.update import update`` imports it on first
use: this package is callable (edgeopt.commands), so importing it stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.update.run", "update")
