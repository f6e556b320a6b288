"""Knowledge distillation: teacher -> smaller student (``distill``; the CLI is `edgeopt distill`)."""

from edgeopt.distill.run import DistillResult, distill

__all__ = ["DistillResult", "distill"]
