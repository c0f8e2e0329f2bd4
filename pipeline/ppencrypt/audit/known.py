"""known-plaintext: the attacker knows k plain/encrypted pairs and recovers the key they share.

The pairs are the first k images of the audited split; the audit scores the attack on the other
images only. The recovered key is applied to every scored ciphertext as if the key were shared
— true under a dataset-scope key (every other image falls), false under an image-scope key (it
must fail). The statistics say how much of the key the pairs pinned down; the key itself is
never reported or written.
"""

from __future__ import annotations

from .attacks import Attack, Outcome, register
from .known_block import block_recovery
from .known_pixel import pixel_decryptor, recover_pixel_key


@register
class KnownPlaintext(Attack):
    name = "known-plaintext"
    summary = "recover the shared key from k known plain/encrypted pairs, decrypt the rest with it"
    needs_pairs = True

    def not_applicable(self, target):
        if target.scope is None:
            return "no key"
        if target.cipher.family != "pixel" and block_recovery(target.cipher) is None:
            return f"no key recovery for method {target.method!r}"
        return None

    def run(self, ciphertexts, target, pairs=None):
        stats = {"pairs": len(pairs)}
        if target.cipher.family == "pixel":
            cand = target.candidates
            recovery = recover_pixel_key(pairs.plain, pairs.cipher, cand)
            stats.update(recovery.stats(cand, ciphertexts))
            return Outcome(pixel_decryptor(recovery, cand).apply(ciphertexts), stats)
        recovery = block_recovery(target.cipher)(pairs.plain, pairs.cipher, target.cipher.block)
        stats.update(recovery.stats)
        return Outcome(recovery.decrypt(ciphertexts), stats)
