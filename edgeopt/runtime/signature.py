"""Signature check of an unpacked bundle with the OpenSSF ``model-signing`` package (key-based).

The signature (``model.sig``, a Sigstore bundle with a DSSE envelope) covers the sha256 of every
other file, manifest.json included. This is exactly what ``model_signing verify key`` checks, so the
two agree. model-signing is imported here only: loading an installed model never needs it.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.runtime.errors import BundleError
from edgeopt.runtime.manifest import SIGNATURE


class SignatureError(BundleError):
    """The signature is missing, malformed, made with another key, or does not match the files."""


def _model_signing():
    try:
        import model_signing
        from cryptography.exceptions import InvalidSignature
    except ImportError:
        raise BundleError("checking signatures needs the model-signing package: "
                          "pip install 'edgeopt[bundle]' (model-signing and pyopenssl)") from None
    return model_signing, InvalidSignature


def hashing_config():
    model_signing, _ = _model_signing()
    return model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)


def verify_folder(folder: Path, public_key: str | Path) -> None:
    model_signing, invalid = _model_signing()
    key = Path(public_key)
    if not key.is_file():
        raise BundleError(f"no such public key: {key}")
    if not (folder / SIGNATURE).is_file():
        raise SignatureError(f"the bundle has no signature ({SIGNATURE}); it was packaged without --sign-key")
    try:
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key)
    except (ValueError, TypeError) as e:
        raise BundleError(f"{key} is not a PEM EC public key (P-256/384/521): {e}") from None
    try:
        config.set_hashing_config(hashing_config()).verify(folder, folder / SIGNATURE)
    except invalid:
        raise SignatureError(f"signature check failed: {SIGNATURE} was not made with the key {key.name}") from None
    except KeyError as e:
        raise SignatureError(f"signature check failed: {SIGNATURE} is malformed (no {e})") from None
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SignatureError(f"signature check failed: {first[:300]}") from None
