"""Everything the master key does, in one place.

    file.py    the key file: generation, the permission check, the key id (MasterKey)
    derive.py  HKDF-SHA256 subkeys and ChaCha20 keystreams, the only source of mask bits
    records.py version 3: a fixed-size record of key material per image, a batch per call
    draws.py   what a method draws from its key (bits, integers, permutations), from a
               stream (v1, v2) or from records (v3)
    scope.py   how a dataset uses its key: scope, derivation, salt (KeyUse)
    mac.py     the manifest's HMAC: signing, and checking it
    keyed.py   open_keyed, the one door through which a command holding the key opens a dataset
    binding.py which dataset the user means: the ids this client wrote where, or --dataset-id

No torch here, and nothing the server imports: pptrain never holds a key.
"""

from .derive import DATASET_SALT_BYTES, KDF_LATEST, KDF_V1, KDF_V2, KDF_V3, KDFS, SCOPES, KeyRing, Keystream, hkdf_sha256, index_nonce
from .file import HEADER, KEY_BYTES, MasterKey, generate_key_file, key_id_of, load_key
from .keyed import KeyedDataset, open_keyed
from .mac import SourceDigest, journal_mac, mac_key, sign, source_digest
from .scope import KeyUse

__all__ = [
    "DATASET_SALT_BYTES",
    "HEADER",
    "KDFS",
    "KDF_V1",
    "KDF_LATEST",
    "KDF_V2",
    "KDF_V3",
    "KEY_BYTES",
    "KeyRing",
    "KeyUse",
    "KeyedDataset",
    "Keystream",
    "MasterKey",
    "SCOPES",
    "generate_key_file",
    "hkdf_sha256",
    "index_nonce",
    "key_id_of",
    "load_key",
    "SourceDigest",
    "journal_mac",
    "mac_key",
    "open_keyed",
    "sign",
    "source_digest",
]
