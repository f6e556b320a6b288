"""``edgeopt distill``: knowledge distillation, teacher -> smaller student (run.py).

``edgeopt.distill(...)`` is run.distill, and ``from edgeopt.distill import distill`` imports it on first
use: this package is callable (edgeopt.commands), so importing it stays cheap.
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.distill.run", "distill")
