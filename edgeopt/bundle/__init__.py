"""Signed bundles for in-store devices (DESIGN.md "Bundles", docs/BUNDLES.md).

``package`` builds one ``.edgepkg`` from an export folder, ``verify`` checks one, ``install``
unpacks, verifies, health-checks and switches atomically, ``rollback`` switches back, ``keygen``
makes a signing key pair. Each is keyword-only and returns a result dataclass. The device-side
loader is ``edgeopt.runtime``.
"""

_PUBLIC = {"package": "edgeopt.bundle.build", "PackageResult": "edgeopt.bundle.build",
           "verify": "edgeopt.bundle.verification", "VerifyResult": "edgeopt.bundle.verification",
           "install": "edgeopt.bundle.installation", "InstallResult": "edgeopt.bundle.installation",
           "rollback": "edgeopt.bundle.installation", "RollbackResult": "edgeopt.bundle.installation",
           "keygen": "edgeopt.bundle.sign", "KeygenResult": "edgeopt.bundle.sign",
           "predict": "edgeopt.bundle.prediction", "PredictResult": "edgeopt.bundle.prediction"}
__all__ = list(_PUBLIC)


def __getattr__(name):  # lazy: importing edgeopt.bundle.<module> stays cheap
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edgeopt.bundle' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
