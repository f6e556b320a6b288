"""Signed bundles for in-store devices (DESIGN.md "Bundles", docs/BUNDLES.md).

``package`` builds one ``.edgepkg`` from an export folder, ``verify`` checks one, ``install``
unpacks, verifies, health-checks and switches atomically, ``rollback`` switches back, ``keygen``
makes a signing key pair. The device-side loader is ``edgeopt.runtime``.
"""
