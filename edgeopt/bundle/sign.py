"""Key pairs and signatures: NIST P-256 keys in PEM (cryptography), signatures in the OpenSSF
model-signing format (the ``model-signing`` package), so ``model_signing verify key`` accepts ours."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import UsageError, first_line
from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.manifest import SIGNATURE
from edgeopt.runtime.signature import SignatureError, _model_signing, hashing_config, verify_folder

__all__ = ["KeygenResult", "SignatureError", "key_id", "keygen", "load_private_key", "sign_folder", "signature_state",
           "verify_folder"]


@dataclass
class KeygenResult:
    private_key: Path
    public_key: Path
    key_id: str  # sha256 of the public key's PEM, as model-signing records it in each signature


def key_id(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem).hexdigest()


def _public_pem(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def keygen(*, out: str | os.PathLike) -> KeygenResult:
    """Write ``OUT.key`` (private, mode 0600) and ``OUT.pub``; never overwrites a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out)
    private, public = out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")
    for p in (private, public):
        if p.exists():
            raise UsageError(f"{p} exists; keygen never overwrites a key: choose another -o NAME")
    if not out.parent.is_dir():
        raise UsageError(f"folder {out.parent} does not exist; create it first")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(_public_pem(key))
    return KeygenResult(private, public, key_id(_public_pem(key)))


def load_private_key(path: str | os.PathLike):
    """The EC private key at ``path``, or a UsageError that says what is wrong with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such signing key: {path} (make one with `edgeopt keygen -o NAME`)")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path} is not an unencrypted PEM private key ({first_line(e)})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in ("secp256r1", "secp384r1",
                                                                                  "secp521r1"):
        raise UsageError(f"{path} is not a NIST P-256/384/521 EC key; make one with `edgeopt keygen`")
    return key


def sign_folder(folder: Path, private_key: str | os.PathLike) -> str:
    """Write ``folder/model.sig`` over every other file; returns the key id."""
    key = load_private_key(private_key)
    model_signing, _ = _model_signing()
    model_signing.signing.Config().use_elliptic_key_signer(private_key=Path(private_key)).set_hashing_config(
        hashing_config()).sign(folder, folder / SIGNATURE)
    return key_id(_public_pem(key))


def signature_state(bundle: Path, folder: Path, signed: bool, public_key) -> str:
    """'verified' (the key checks the unpacked ``folder``), 'not checked' (no key given) or
    'absent'; BundleError when a key is given for an unsigned bundle or the signature fails."""
    if public_key is not None:
        if not signed:
            raise BundleError(f"{bundle.name} is not signed (no model.sig); it was packaged without --sign-key")
        verify_folder(folder, public_key)
        return "verified"
    return "not checked" if signed else "absent"


def public_key_id(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such public key: {path}")
    return key_id(path.read_bytes())
