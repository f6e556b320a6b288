"""The device runtime's one exception (the CLI maps it to exit 2: bad input)."""


class BundleError(Exception):
    """A bundle or installed folder that cannot be used: missing, tampered, truncated, unreadable."""
