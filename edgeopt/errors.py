"""The few exceptions edgeopt raises on purpose; the CLI maps each to an exit code.

Anything else that escapes is a bug: the CLI writes its traceback to a log file and exits 3.
"""


class EdgeoptError(Exception):
    """Base class: a message for the user and the exit code the CLI should use."""

    exit_code = 2


class UsageError(EdgeoptError):
    """Bad input: a missing file, a wrong flag, a model or data file we cannot use (exit 2)."""

    exit_code = 2


class UnavailableError(UsageError):
    """A runtime or optional package is not installed or has no device here (exit 2)."""


class GateError(EdgeoptError):
    """A quality or performance gate failed: verification, accuracy drop, regression (exit 1)."""

    exit_code = 1


class VerificationError(GateError):
    """A bundle failed verification: tampered, truncated, unsigned where a key was given, wrong key,
    expired (exit 1, the same for `verify` and `install`)."""


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message (or of a string), at most ``limit``
    characters, for a one-line error; the exception's type name when the message is empty (never
    raises)."""
    text = exc if isinstance(exc, str) else str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return "" if isinstance(exc, str) else type(exc).__name__
