"""fr-advanced and fr-shared: choose, pixel by pixel, the candidate decryption that best
continues the pixels already reconstructed.

Scan order: raster (row by row, left to right). The first pixel has no neighbours and is taken
as fr-basic takes it (colour order kept, components above 127 negated). Every later pixel
(i, j) tries all candidates t (48 for ``pe`` on RGB, 2^C for ``np``; candidates.py) and keeps
the one with the least

    cost(t) = sum over the causal neighbours n in {(i, j-1), (i-1, j), (i-1, j-1), (i-1, j+1)}
              that exist of ||x_t - rec[n]||²

computed as K·||x_t||² - 2·x_t·Σ rec[n] (the ||rec[n]||² term is the same for every t).
Cost: H·W steps, each O(N·T·C) — vectorised over the N images and T candidates, so 1,000 RGB
images of 32×32 take 1024 steps over 1000×48×3 arrays.

What this can and cannot do (measured in docs/privacy.md): starting from a folded pixel (every
component ≤ 127), a component's folded value v ≤ 127 is always nearer to any folded neighbour
than 255 − v is, so the scan never leaves the fold. For ``np`` fr-advanced is therefore exactly
fr-basic; for ``pe`` it adds the choice of each pixel's colour order. That is the limit of the
per-image greedy attack ([P]'s "advanced" attack), not a shortcoming of this implementation.

fr-shared is the same scan with one choice per position for all N images at once (the costs
summed over the images). It assumes what a dataset-scope key gives: every image is encrypted
with the same candidate at the same position, so a thousand images vote. It recovers the key up
to one global candidate applied to every pixel (a whole-image colour order and negation that the
cost cannot see); the audit scores the variant a viewer would pick (attacks.Outcome.variants).
Under an image-scope key its assumption is false and it fails; it runs anyway, to show that.
"""

from __future__ import annotations

import numpy as np

from .attacks import Attack, Outcome, Target, register
from .candidates import PixelCandidates
from .variants import PixelVariants


def greedy_scan(ciphertexts: np.ndarray, cand: PixelCandidates, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructions (N x H x W x C uint8) and the chosen candidates (N x H x W, or H x W when
    ``shared``)."""
    n, h, w, c = ciphertexts.shape
    rec = np.empty((n, h, w, c), np.float32)
    chosen = np.empty((n, h, w) if not shared else (h, w), np.int64)
    images = np.arange(n)
    corner = ciphertexts[:, 0, 0]
    # First pixel: fr-basic's fold, per image, or for fr-shared the fold of the images' mean.
    first = cand.fold(corner.mean(0) if shared else corner)
    rec[:, 0, 0] = cand.decryptions(corner)[images, first] if not shared else cand.decryptions(corner)[:, first]
    chosen[..., 0, 0] = first
    for i in range(h):
        for j in range(w):
            if i == 0 and j == 0:
                continue
            neighbours = [rec[:, i, j - 1]] if j else []
            if i:
                neighbours.append(rec[:, i - 1, j])
                if j:
                    neighbours.append(rec[:, i - 1, j - 1])
                if j + 1 < w:
                    neighbours.append(rec[:, i - 1, j + 1])
            options = cand.decryptions(ciphertexts[:, i, j]).astype(np.float32)  # N, T, C
            total = np.sum(neighbours, axis=0)  # N, C
            cost = len(neighbours) * np.einsum("ntc,ntc->nt", options, options) - 2 * np.einsum("ntc,nc->nt", options, total)
            if shared:
                t = int(np.argmin(cost.sum(axis=0, dtype=np.float64)))
                rec[:, i, j] = options[:, t]
            else:
                t = np.argmin(cost, axis=1)
                rec[:, i, j] = options[images, t]
            chosen[..., i, j] = t
    return rec.astype(np.uint8), chosen


class _Greedy(Attack):
    shared = False

    def not_applicable(self, target: Target) -> str | None:
        if target.cipher.family != "pixel":
            return "not pixel-wise: a ciphertext pixel depends on more than its own plain value"
        return None


@register
class FeatureReconstructionAdvanced(_Greedy):
    name = "fr-advanced"
    summary = "per image, per pixel in raster order: the candidate that best continues the decoded neighbours"

    def run(self, ciphertexts, target, pairs=None):
        cand = target.candidates
        images, _ = greedy_scan(ciphertexts, cand, shared=False)
        return Outcome(images, {"candidates": len(cand)})


@register
class FeatureReconstructionShared(_Greedy):
    name = "fr-shared"
    summary = "fr-advanced with one choice per position for all images (a shared key), up to a global colour order"
    shared = True

    def run(self, ciphertexts, target, pairs=None):
        cand = target.candidates
        images, _ = greedy_scan(ciphertexts, cand, shared=True)
        return Outcome(images, {"candidates": len(cand)}, variants=PixelVariants(cand))
