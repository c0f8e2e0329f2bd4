"""The manifest is authenticated by the key: whoever holds the key can tell whether the
manifest is the one ppencrypt wrote.

``ppencrypt dataset`` signs every manifest of an encrypted dataset (version 2) with
HMAC-SHA256 under a subkey of the master key (derive.mac_key), over the canonical bytes of the
whole document but the MAC itself (formats.manifest.canonical): method, parameters, scope,
salt, shape, classes, every split, every shard's hash and size. A server that edits any of it
— says ``plain`` so that queries go out in the clear, weakens the scope, renames a split, swaps
a shard and its hash — cannot make a matching MAC without the key.

Every command that holds the key (decrypt, preview --key, image --like, verify --key) calls
:func:`authenticate` before it writes anything; the readers then check each file's SHA-256
against the authenticated manifest as they read it. Commands without the key (verify, inspect,
the server's pptrain) can check integrity, not authenticity.
"""

from __future__ import annotations

import hashlib
import hmac

from .derive import mac_key
from .errors import KeyFileError, ManifestError
from .formats import Dataset, Manifest
from .formats.manifest import MANIFEST
from .keys import MasterKey


def sign(m: Manifest, key: MasterKey) -> str:
    return hmac.new(mac_key(key.secret), m.unsigned(), hashlib.sha256).hexdigest()


def authenticate(ds: Dataset, key: MasterKey, key_name: str = "the key", accept_v1: bool = True) -> list[str]:
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
        raise KeyFileError(f"{key_name}: key id {key.key_id} is not the dataset's ({m.cipher.key_id}); wrong key")
    if m.version == 1:
        warning = f"{shown}: manifest version 1 carries no MAC, so nothing shows whether it was altered; re-encrypt to get one"
        if not accept_v1:
            raise ManifestError(f"{warning} (or pass --trust-manifest to use it unauthenticated)")
        return [warning]
    if m.mac is None:
        raise ManifestError(f"{shown}: has no MAC (version 2 manifests of encrypted datasets always do): it was altered")
    expected = hmac.new(mac_key(key.secret), m.signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m.mac):
        raise ManifestError(f"{shown}: MAC mismatch: the manifest was altered after ppencrypt wrote it")
    return []
