"""``edgeopt update``: incremental updates that learn new data without forgetting the old (run.py)."""

from edgeopt.update.run import UpdateResult, update

__all__ = ["UpdateResult", "update"]
