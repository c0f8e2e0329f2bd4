"""Known-plaintext recovery of a per-position pixel key (``pe``, ``np``) from k pairs.

At every position the attacker tries all candidates (candidates.py) on the known plain pixels
and keeps those that give the known encrypted pixels in every pair. Under a dataset-scope key
the true candidate always survives, and what survives decrypts every other image.

One pair rarely pins every position down: where a known pixel has two equal components (or
two with v = 255 − w), several candidates encrypt it the same way. Such a position is
*ambiguous*; the attack keeps the first survivor (the lowest candidate index), which decrypts
another image wrongly only where that image's components differ there. The attacker can see
which decrypted pixels are at risk — those where the survivors disagree on the ciphertext — and
counts them (``uncertain_pixels``); a scored image without one is decrypted exactly, provably.
More pairs shrink the survivors (on the vendored CIFAR-10 images, 69 ambiguous positions of
1024 with one pair, none with four).

Under an image-scope key each pair has its own key: with one pair the survivors are just that
image's key, which decrypts nothing else; with two or more, most positions have no survivor
(``inconsistent``: the pairs do not share a key) and the attack keeps the candidate that
explains the most pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ciphers import GatherXor
from .candidates import PixelCandidates
from .consistency import consistency_counts, first_consistent


@dataclass
class PixelRecovery:
    choice: np.ndarray  # (H, W) candidate index kept at each position
    survivors: np.ndarray  # (H, W, T) bool: consistent with every pair

    def stats(self, cand: PixelCandidates, ciphertexts: np.ndarray) -> dict:
        alive = self.survivors.sum(-1)
        return {**consistency_counts(alive, "positions"), **self._uncertain(cand, ciphertexts, alive > 1)}

    def _uncertain(self, cand: PixelCandidates, ciphertexts: np.ndarray, ambiguous: np.ndarray) -> dict:
        """Decrypted pixels where the surviving candidates disagree (only ambiguous positions
        can have them; there are few, so this looks at those alone)."""
        ii, jj = np.nonzero(ambiguous)
        if ii.size == 0:
            return {"uncertain_pixels": 0, "uncertain_images": 0}
        options = cand.decryptions(ciphertexts[:, ii, jj])  # N, A, T, C
        kept = options[:, np.arange(ii.size), self.choice[ii, jj]]  # N, A, C
        differs = (options != kept[:, :, None]).any(-1) & self.survivors[ii, jj][None]  # N, A, T
        at_risk = differs.any(-1)  # N, A
        return {"uncertain_pixels": int(at_risk.sum()), "uncertain_images": int(at_risk.any(1).sum())}


def recover_pixel_key(plain: np.ndarray, cipher: np.ndarray, cand: PixelCandidates) -> PixelRecovery:
    """Candidates per position consistent with all k pairs (k x H x W x C each)."""
    matches = (cand.encryptions(plain) == cipher[..., None, :]).all(-1)  # k, H, W, T
    votes = matches.sum(0)
    survivors = votes == len(plain)
    # First survivor; where none survives, the candidate that explains the most pairs.
    return PixelRecovery(first_consistent(survivors, votes), survivors)


def pixel_decryptor(recovery: PixelRecovery, cand: PixelCandidates) -> GatherXor:
    return GatherXor(*cand.decryptor(recovery.choice))
