"""``edgeopt federate``: stores train a shared model on their own data with Flower; only weights
travel, and the global model passes update's forgetting gate before it is written (run.py).

``edgeopt.federate(...)`` is run.federate; importing this package stays cheap (no torch, no flwr).
"""

from edgeopt.commands import callable_package

callable_package(__name__, "edgeopt.federate.run", "federate")
