"""ppencrypt: the client half — keys, the pixel-based cipher, encrypted dataset shards.

Nothing in this package imports torch or the trainer; the trainer reads datasets only
through :mod:`ppencrypt.formats`.
"""

__version__ = "0.1.0"
