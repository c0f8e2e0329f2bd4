"""The manifest is authenticated by the key: whoever holds the key can tell whether the
manifest is the one ppencrypt wrote.

``ppencrypt dataset`` signs every manifest of an encrypted dataset (version 2) with
HMAC-SHA256 under a subkey of the master key (:func:`mac_key`), over the canonical bytes of the
whole document but the MAC itself (formats.manifest.canonical): method, parameters, scope,
salt, shape, classes, every split, every shard's hash and size. A server that edits any of it
— says ``plain`` so that queries go out in the clear, weakens the scope, renames a split, swaps
a shard and its hash — cannot make a matching MAC without the key.

Every command that holds the key (decrypt, preview --key, image --like, verify --key) opens
its dataset through :func:`ppencrypt.keys.open_keyed`, which calls :func:`authenticate` before
anything is written; the readers then check each file's SHA-256 against the authenticated
manifest as they read it. Commands without the key (verify, inspect, the server's pptrain) can
check integrity, not authenticity.
"""

from __future__ import annotations

import hashlib
import hmac

from ..errors import KeyFileError, ManifestError
from ..formats import Dataset, Manifest
from ..formats.manifest import MANIFEST
from .derive import KDF_V2, KDF_V3, hkdf_sha256
from .file import MasterKey

MAC_LABEL = b"ppencrypt/v2|manifest-mac"
JOURNAL_LABEL = b"ppencrypt/v3|journal-mac"
SOURCE_LABEL = "ppencrypt/v3|source-digest|dataset={dataset_id}|split={split}"


def mac_key(master: bytes) -> bytes:
    """The subkey that authenticates manifests (HMAC-SHA256), under a label of its own."""
    return hkdf_sha256(master, MAC_LABEL, salt=KDF_V2.encode())


def journal_key(master: bytes) -> bytes:
    """The subkey that authenticates an output's journal (formats/journal.py): the server
    keeps the journal between runs, so what ``--resume`` reads back is checked like a manifest."""
    return hkdf_sha256(master, JOURNAL_LABEL, salt=KDF_V3.encode())


def journal_mac(key: MasterKey, data: bytes) -> str:
    return hmac.new(journal_key(key.secret), data, hashlib.sha256).hexdigest()


def _source_key(key: MasterKey, dataset_id: str, split: str) -> bytes:
    label = SOURCE_LABEL.format(dataset_id=dataset_id, split=split).encode()
    return hkdf_sha256(key.secret, label, salt=KDF_V3.encode())


class SourceDigest:
    """The keyed digest of one split's plain images (the manifest's ``cipher.sources``), built
    shard by shard so that a resumed job (or shards encrypted on other machines) can finish it
    without the images of the shards already written:

        shard k:  d_k = HMAC(S, "shard|" || SHA-256(plain pixels of shard k))
        split:        HMAC(S, "split|" || d_0 || d_1 || ...)

    ``S`` is :func:`source_digest`'s subkey. ``d_k`` reveals nothing without the key, so the
    journal may keep it. ``legacy`` also feeds the digest of datasets written before (one HMAC
    over every image), which ``--reproduce`` of such a dataset compares instead."""

    def __init__(self, key: MasterKey, dataset_id: str, split: str, legacy: bool = False):
        self._key = _source_key(key, dataset_id, split)
        self._shard = hashlib.sha256()
        self.shards: list[str] = []
        self._legacy = hmac.new(self._key, digestmod=hashlib.sha256) if legacy else None

    def update(self, data) -> None:
        self._shard.update(data)
        if self._legacy is not None:
            self._legacy.update(data)

    def end_shard(self) -> str:
        d = self._append(self._shard.digest())
        self._shard = hashlib.sha256()
        return d

    def add_shard(self, plain_sha256: bytes) -> str:
        """A shard whose plain pixels were hashed elsewhere (a worker): its d_k."""
        self._legacy = None  # those pixels never pass here
        return self._append(plain_sha256)

    def _append(self, plain_sha256: bytes) -> str:
        d = hmac.new(self._key, b"shard|" + plain_sha256, hashlib.sha256).hexdigest()
        self.shards.append(d)
        return d

    def resumed(self, d: str) -> None:
        """A shard written by an earlier run, its ``d_k`` from the (authenticated) journal."""
        self.shards.append(d)
        self._legacy = None  # its images are not fed again: no legacy digest for a resumed split

    def hexdigest(self) -> str:
        return hmac.new(self._key, b"split|" + b"".join(bytes.fromhex(d) for d in self.shards), hashlib.sha256).hexdigest()

    def legacy_hexdigest(self) -> str | None:
        return None if self._legacy is None else self._legacy.hexdigest()


def source_digest(key: MasterKey, dataset_id: str, split: str) -> hmac.HMAC:
    """A keyed digest of one split's plain images, fed in order as they are encrypted, under a
    subkey of the dataset's id and split. The manifest records it (``cipher.sources``), so
    ``--reproduce`` can tell the same source from other data before reusing the dataset's salt
    (which would give the other data its masks) and id (which would let the server pass one for
    the other). It reveals nothing without the key."""
    return hmac.new(_source_key(key, dataset_id, split), digestmod=hashlib.sha256)


def _mac(key: MasterKey, data: bytes) -> str:
    return hmac.new(mac_key(key.secret), data, hashlib.sha256).hexdigest()


def sign(m: Manifest, key: MasterKey) -> str:
    return _mac(key, m.signing_bytes())


def authenticate(ds: Dataset, key: MasterKey, accept_v1: bool = True) -> list[str]:
    """Raise unless ``key`` is the dataset's and its manifest is the one ppencrypt wrote.
    Version 1 manifests carry no MAC: with ``accept_v1`` they pass with a warning (returned),
    without it they are refused."""
    m, shown = ds.manifest, ds.loc.shown(MANIFEST)
    if m.cipher.key_id is None:
        raise ManifestError(
            f"{shown}: says the dataset is not encrypted (method {m.cipher.method}), so it has no MAC for the key to "
            "check; if you encrypted it, the manifest was altered"
        )
    if key.key_id != m.cipher.key_id:
        raise KeyFileError(f"{key.origin}: key id {key.key_id} is not the dataset's ({m.cipher.key_id}); wrong key")
    if m.version == 1:
        warning = f"{shown}: manifest version 1 carries no MAC, so nothing shows whether it was altered; re-encrypt to get one"
        if not accept_v1:
            raise ManifestError(f"{warning} (or pass --trust-manifest to use it unauthenticated)")
        return [warning]
    if m.mac is None:
        raise ManifestError(f"{shown}: has no MAC (version 2 manifests of encrypted datasets always do): it was altered")
    if not hmac.compare_digest(_mac(key, m.signed), m.mac):
        raise ManifestError(f"{shown}: MAC mismatch: the manifest was altered after ppencrypt wrote it")
    return []
