"""One signing key per TUF role in a keys folder: ``<role>.pem`` (PKCS#8, mode 0600), ECDSA P-256
made and used through securesystemslib's CryptoSigner; retired keys go to ``retired/``.

Separate keys per role are the point of TUF: the timestamp key sits on the server that runs
``repo refresh`` from cron, the root key can stay offline, and a stolen online key is rotated
without re-provisioning devices (the new root is signed by the old root key as well).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UsageError

ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY_FILE = "expiry.json"
# seconds each role's metadata stays valid after signing (Mender/TUF practice: the online
# timestamp short, the offline root long)
DEFAULT_EXPIRY = {"root": 365 * 86400, "targets": 90 * 86400, "snapshot": 7 * 86400, "timestamp": 86400}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
    return role


def parse_expiry(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``("timestamp=6h", "root=2y"...)`` -> seconds per role, on top of the defaults."""
    out = dict(DEFAULT_EXPIRY)
    for item in items:
        m = re.fullmatch(r"(\w+)=(\d+)([smhd])", item)
        if not m:
            raise UsageError(f"--expiry {item!r}: give ROLE=N with a unit s, m, h or d (timestamp=1d)")
        out[check_role(m.group(1))] = int(m.group(2)) * _UNITS[m.group(3)]
    return out


@dataclass(frozen=True)
class KeyStore:
    folder: Path

    def path(self, role: str) -> Path:
        return self.folder / f"{check_role(role)}.pem"

    def create(self, expiry: dict[str, int]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = [r for r in ROLES if self.path(r).exists()]
        if existing:
            raise UsageError(f"{self.folder} already holds keys ({', '.join(existing)}); use an empty --keys folder")
        for role in ROLES:
            self._write_new(role)
        (self.folder / EXPIRY_FILE).write_text(json.dumps(expiry, indent=1))

    def signer(self, role: str):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner

        path = self.path(role)
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise UsageError(f"no {role} key: {path} is missing (the --keys folder that `edgeopt repo init` "
                             "made)") from None
        except (ValueError, TypeError) as e:
            raise UsageError(f"{path} is not a PEM private key ({e})") from None
        return CryptoSigner(key)

    def expiry(self) -> dict[str, int]:
        path = self.folder / EXPIRY_FILE
        try:
            return {**DEFAULT_EXPIRY, **json.loads(path.read_text())}
        except FileNotFoundError:
            return dict(DEFAULT_EXPIRY)
        except ValueError:
            raise UsageError(f"{path} is not JSON; rewrite it as {{\"timestamp\": SECONDS, ...}}") from None

    def rotate(self, role: str):
        """Retire ``<role>.pem`` and make a new one; returns (old signer, new signer)."""
        old = self.signer(role)
        retired = self.folder / "retired"
        retired.mkdir(exist_ok=True)
        os.rename(self.path(role), retired / f"{role}-{int(time.time())}-{old.public_key.keyid[:12]}.pem")
        return old, self._write_new(role)

    def _write_new(self, role: str):
        from securesystemslib.signer import CryptoSigner

        signer = CryptoSigner.generate_ecdsa()
        tmp = self.path(role).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)
        os.rename(tmp, self.path(role))
        return signer
