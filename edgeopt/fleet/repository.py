"""The repository side: a plain folder of TUF metadata and bundles that any static file server hosts.

``metadata/`` holds ``N.root.json`` (and ``root.json``, the latest, to provision devices with),
``N.targets.json``, ``N.snapshot.json`` and ``timestamp.json`` (consistent snapshots: a client never
sees a half-published release, and a cache can never mix one release's targets with another's
snapshot); ``targets/<model>/<version>/<sha256>.<file>`` holds the bundles. Each role is signed by
its own key (keys.py) through python-tuf's metadata API; every write goes to a temporary file and is
renamed, ``timestamp.json`` last, so what a device fetches is always a complete, signed release.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeopt.bundle import layout
from edgeopt.errors import UsageError
from edgeopt.fleet.keys import ROLES, KeyStore, check_role
from edgeopt.fleet.release import Release

METADATA, TARGETS = "metadata", "targets"


@dataclass
class RepoState:
    """The metadata of one release of the repository, and where it lives."""

    repo: Path
    keys: KeyStore
    root: object  # Metadata[Root]
    targets: object  # Metadata[Targets]
    snapshot: object  # Metadata[Snapshot]
    timestamp: object  # Metadata[Timestamp]

    def releases(self) -> dict[str, Release]:
        """target path -> Release, for the targets edgeopt published."""
        out = {}
        for path, info in self.targets.signed.targets.items():
            release = Release.from_custom(info.custom)
            if release is not None:
                out[path] = release
        return out


def _expires(seconds: int) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def _to_bytes(md) -> bytes:
    from tuf.api.serialization.json import JSONSerializer

    return md.to_bytes(JSONSerializer(compact=False))


def _meta_dir(repo: Path) -> Path:
    return Path(repo) / METADATA


def init(*, repo: str | os.PathLike, keys: str | os.PathLike, expiry: dict[str, int]) -> RepoState:
    """A new repository: four role keys, root v1 and empty targets, snapshot and timestamp."""
    from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

    repo, store = Path(repo), KeyStore(Path(keys))
    check_apart(repo, keys)
    if _meta_dir(repo).exists() and any(_meta_dir(repo).iterdir()):
        raise UsageError(f"{repo} already holds a TUF repository ({_meta_dir(repo)}); choose an empty folder")
    store.create(expiry)
    root = Root(expires=_expires(expiry["root"]), consistent_snapshot=True)
    for role in ROLES:
        root.add_key(store.signer(role).public_key, role)
    state = RepoState(repo, store, Metadata(root), Metadata(Targets(expires=_expires(expiry["targets"]))),
                      Metadata(Snapshot(expires=_expires(expiry["snapshot"]))),
                      Metadata(Timestamp(expires=_expires(expiry["timestamp"]))))
    (repo / TARGETS).mkdir(parents=True, exist_ok=True)
    _meta_dir(repo).mkdir(parents=True, exist_ok=True)
    state.root.sign(store.signer("root"))
    _save_root(state)
    for role in ("targets", "snapshot", "timestamp"):
        getattr(state, role).signed.version = 0  # _save bumps to 1
    _save(state, "targets")
    return state


def load(repo: str | os.PathLike, keys: str | os.PathLike) -> RepoState:
    """The repository's current release: the newest root, the timestamp, and what it points at."""
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata

    repo, meta = Path(repo), _meta_dir(Path(repo))
    roots = sorted((int(m.group(1)), p) for p in meta.glob("*.root.json")
                   if (m := re.fullmatch(r"(\d+)\.root\.json", p.name)))
    if not roots or not (meta / "timestamp.json").is_file():
        raise UsageError(f"{repo} is not a TUF repository (no {meta}/N.root.json and timestamp.json); "
                         "run `edgeopt repo init` first")
    if not Path(keys).is_dir():
        raise UsageError(f"no such keys folder: {keys}")
    check_apart(repo, keys)
    try:
        root = Metadata.from_file(str(roots[-1][1]))
        timestamp = Metadata.from_file(str(meta / "timestamp.json"))
        snapshot = Metadata.from_file(str(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"))
        targets = Metadata.from_file(str(meta / f"{snapshot.signed.meta['targets.json'].version}.targets.json"))
    except (OSError, ValueError, KeyError, RepositoryError) as e:
        raise UsageError(f"{repo}: cannot read its metadata ({e}); restore the folder from a backup") from None
    return RepoState(repo, KeyStore(Path(keys)), root, targets, snapshot, timestamp)


def locked(keys: str | os.PathLike):
    """One writer per repository (publish, promote, refresh, rotate), the lock in the keys folder."""
    if not Path(keys).is_dir():
        raise UsageError(f"no such keys folder: {keys}")
    return layout.locked(Path(keys))


def check_apart(repo: str | os.PathLike, keys: str | os.PathLike) -> None:
    """The repository folder is published as it is: private keys inside it would be served to anyone."""
    repo, keys = Path(repo).resolve(), Path(keys).resolve()
    if keys == repo or repo in keys.parents:
        raise UsageError(f"--keys {keys} is inside --repo {repo}, which a web server publishes; keep the keys "
                         "in a folder outside it")


def _save_root(state: RepoState) -> None:
    meta = _meta_dir(state.repo)
    data = _to_bytes(state.root)
    _write(meta / f"{state.root.signed.version}.root.json", data)
    _write(meta / "root.json", data)


def _save(state: RepoState, start: str) -> None:
    """Re-sign ``start`` and every role below it (targets -> snapshot -> timestamp), each a new version."""
    from tuf.api.metadata import MetaFile

    expiry, meta = state.keys.expiry(), _meta_dir(state.repo)
    chain = ("targets", "snapshot", "timestamp")
    signers = _signers(state, start)  # every key first: a missing one changes nothing
    for role in chain[chain.index(start):]:
        md = getattr(state, role)
        md.signed.version += 1
        md.signed.expires = _expires(expiry[role])
        if role == "snapshot":
            md.signed.meta["targets.json"] = MetaFile(version=state.targets.signed.version)
        if role == "timestamp":
            data = _to_bytes(state.snapshot)
            md.signed.snapshot_meta = MetaFile(version=state.snapshot.signed.version, length=len(data),
                                               hashes={"sha256": hashlib.sha256(data).hexdigest()})
        md.sign(signers[role])
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        _write(meta / name, _to_bytes(md))


def _signers(state: RepoState, start: str) -> dict:
    chain = ("targets", "snapshot", "timestamp")
    return {role: state.keys.signer(role) for role in chain[chain.index(start):]}


def add_target(state: RepoState, bundle: Path, path: str, release: Release) -> object:
    """Copy ``bundle`` in as ``targets/<dir>/<sha256>.<name>`` and sign it into a new release."""
    from tuf.api.metadata import TargetFile

    _signers(state, "targets")  # a missing key leaves no stray copy behind
    info = TargetFile.from_file(path, str(bundle), ["sha256"])
    info.unrecognized_fields["custom"] = release.to_custom()
    dirname, _, name = path.rpartition("/")
    out = state.repo / TARGETS / dirname / f"{info.hashes['sha256']}.{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.copyfile(bundle, tmp)
    os.rename(tmp, out)
    state.targets.signed.targets[path] = info
    _save(state, "targets")
    return info


def update_releases(state: RepoState, changes: dict[str, Release]) -> None:
    """Re-sign the given targets' custom metadata (rollout, state) as one new release."""
    for path, release in changes.items():
        state.targets.signed.targets[path].unrecognized_fields["custom"] = release.to_custom()
    _save(state, "targets")


def refresh(state: RepoState) -> list[str]:
    """A new timestamp, and a new snapshot or targets version too when one would expire within two
    timestamp periods (so a cron job at the timestamp's pace never lets them lapse; their keys are
    needed only then). Returns the roles re-signed; root is renewed only by `rotate-key`."""
    horizon = _expires(2 * state.keys.expiry()["timestamp"])
    chain = ("targets", "snapshot", "timestamp")
    start = next(r for r in chain if r == "timestamp" or getattr(state, r).signed.expires <= horizon)
    _save(state, start)
    return list(chain[chain.index(start):])


def rotate_key(state: RepoState, role: str) -> tuple[str, str]:
    """Replace ``role``'s key: a new root version trusts the new key instead of the old one (signed by
    the old root key too, so devices holding the old root follow the chain), then the role's own
    metadata and those below it are re-signed with it. Returns (old keyid, new keyid)."""
    check_role(role)
    old_root = state.keys.signer("root")
    if role != "root":
        _signers(state, "targets")  # every key this needs is there before the old one is retired
    old, new = state.keys.rotate(role)
    root = state.root.signed
    root.revoke_key(old.public_key.keyid, role)
    root.add_key(new.public_key, role)
    root.version += 1
    root.expires = _expires(state.keys.expiry()["root"])
    state.root.signatures.clear()
    state.root.sign(state.keys.signer("root"))
    if role == "root":
        state.root.sign(old_root, append=True)
    _save_root(state)
    if role != "root":
        _save(state, role)
    return old.public_key.keyid, new.public_key.keyid


def expiries(state: RepoState) -> dict[str, str]:
    return {role: getattr(state, role).signed.expires.isoformat() for role in ROLES}


@dataclass
class RepoResult:
    """What a repository command did: the roles re-signed, and when each role now expires."""

    repo: Path
    signed: list[str]
    expires: dict[str, str]
    root_version: int
    rotated: tuple[str, str] | None = None  # (old keyid, new keyid)

    def to_json(self) -> dict:
        return {"repo": str(self.repo), "signed": self.signed, "expires": self.expires,
                "root_version": self.root_version, "root": str(self.repo / METADATA / "root.json"),
                "rotated": list(self.rotated) if self.rotated else None}


def _result(state: RepoState, signed: list[str], rotated=None) -> RepoResult:
    return RepoResult(state.repo, signed, expiries(state), state.root.signed.version, rotated)


def init_repo(*, repo: str | os.PathLike, keys: str | os.PathLike, expiry: dict[str, int]) -> RepoResult:
    check_apart(repo, keys)
    Path(keys).mkdir(parents=True, exist_ok=True)
    with locked(keys):
        return _result(init(repo=repo, keys=keys, expiry=expiry), list(ROLES))


def refresh_repo(*, repo: str | os.PathLike, keys: str | os.PathLike) -> RepoResult:
    """For cron: a fresh timestamp before the current one expires."""
    with locked(keys):
        state = load(repo, keys)
        return _result(state, refresh(state))


def rotate_repo_key(*, repo: str | os.PathLike, keys: str | os.PathLike, role: str) -> RepoResult:
    check_role(role)
    with locked(keys):
        state = load(repo, keys)
        rotated = rotate_key(state, role)
        chain = ("targets", "snapshot", "timestamp")
        return _result(state, ["root", *(chain[chain.index(role):] if role in chain else [])], rotated)
