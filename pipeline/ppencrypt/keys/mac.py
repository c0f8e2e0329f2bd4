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
SOURCE_LABEL = "ppencrypt/v3|source-digest|dataset={dataset_id}|split={split}"


def mac_key(master: bytes) -> bytes:
    """The subkey that authenticates manifests (HMAC-SHA256), under a label of its own."""
    return hkdf_sha256(master, MAC_LABEL, salt=KDF_V2.encode())


def source_digest(key: MasterKey, dataset_id: str, split: str) -> hmac.HMAC:
    """A keyed digest of one split's plain images, fed in order as they are encrypted, under a
    subkey of the dataset's id and split. The manifest records it (``cipher.sources``), so
    ``--reproduce`` can tell the same source from other data before reusing the dataset's salt
    (which would give the other data its masks) and id (which would let the server pass one for
    the other). It reveals nothing without the key."""
    label = SOURCE_LABEL.format(dataset_id=dataset_id, split=split).encode()
    return hmac.new(hkdf_sha256(key.secret, label, salt=KDF_V3.encode()), digestmod=hashlib.sha256)


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
