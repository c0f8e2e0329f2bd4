"""pptrain: the server half. Trains an adaptation network + a backbone ([P]'s ResNet-18, or any
torchvision classifier) on datasets that ppencrypt encrypted, reading them only through
``ppencrypt.formats``; it never needs a key.

The public API for training loops of your own (api.py) is importable from here:
``from pptrain import EncryptedDataset, EncryptedAugment, input_network, build``. It is loaded
on first use, so ``python -m pptrain`` does not pay for torchvision before it needs it."""

API = ("ADAPT_OUT", "AdaptationNetwork", "EncryptedAugment", "EncryptedDataset", "InvariantAdaptation", "TanakaAdaptation", "build",
       "input_network")  # fmt: skip
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pptrain' has no attribute {name!r}")
