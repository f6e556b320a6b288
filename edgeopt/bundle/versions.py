"""Bundle versions (PEP 440, compared as such), expiry dates, and names safe as folder names."""

from __future__ import annotations

import datetime as dt
import re

from edgeopt.errors import UsageError

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def parse_version(text: str, what: str = "--version"):
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(text)
    except InvalidVersion:
        raise UsageError(f"{what} {text!r} is not a version (PEP 440: 1.4.0, 2026.12.5, 3.0rc1)") from None
    if not _SAFE.fullmatch(text):
        raise UsageError(f"{what} {text!r}: use letters, digits, '.', '+', '-' only")
    return version


def default_version(now: dt.datetime | None = None) -> str:
    """A UTC timestamp as a version (2026.12.5.102511): newer packages compare newer."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.year}.{now.month}.{now.day}.{now:%H%M%S}"


def parse_expires(text: str, now: dt.datetime | None = None) -> str:
    """'30d' or an ISO date/time (UTC when no zone) -> ISO UTC timestamp in the future."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if re.fullmatch(r"\d+d", text):
        when = now + dt.timedelta(days=int(text[:-1]))
    else:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"--expires {text!r}: give a date (2027-01-31), a time (2027-01-31T12:00) "
                             "or days from now (90d)") from None
        when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    if when <= now:
        raise UsageError(f"--expires {text!r} is not in the future")
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def expired(expires: str | None, now: dt.datetime | None = None) -> bool:
    if not expires:
        return False
    return dt.datetime.fromisoformat(expires) <= (now or dt.datetime.now(dt.timezone.utc))


def safe_name(text: str) -> bool:
    return bool(_SAFE.fullmatch(text or ""))
