"""The learned attacks (``ppencrypt audit --learned``): what an attacker who trains networks on
images of its own gets from the ciphertexts alone.

``learned`` — a ciphertext-only inverter, the kind of arXiv 1912.04746's DNN attack. The
attacker encrypts its public images itself, with the target's method and parameters, under
keys of its own (attacker.py), and trains a U-Net (nets.py) to map ciphertext to plain. It
does not know the target's key, so it trains on a *fresh key per image* whatever the target's
scope: that teaches the net what every key leaves visible (for ``np``/``pe``, |x − 127.5| per
component, sorted across components for ``pe``, plus the priors of the domain), which carries
over to any key. Training on one key of its own instead, as the target's dataset scope might
suggest, teaches the net that key, which does not carry over: on Fashion-MNIST ``np`` it scored
below fr-basic (docs/privacy.md).

``learned-shared`` — under a dataset-scope key, what the shared key adds: fr-shared's
reconstruction (the key recovered from the ciphertexts up to one global colour order and
negation), with that global variant chosen by a classifier trained on the attacker's public
images under every variant — the step fr-shared leaves to a viewer, here done without plain
images. The variant is shared, so the N images vote.
"""

from __future__ import annotations

import numpy as np

from .attacker import attacker_encrypt
from .attacks import Attack, Outcome, Target, register
from .extra import require_torch
from .greedy import greedy_scan
from .public import Learner
from .variants import PixelVariants


def _train_inverter(inputs: np.ndarray, targets: np.ndarray, learner: Learner):
    torch = require_torch()
    from . import nets

    x, y = nets.as_input(inputs), nets.as_input(targets)
    model = nets.seeded(learner.budget.seed, lambda: nets.UNet(x.shape[1]))

    def batch(rng):
        idx = torch.from_numpy(rng.integers(0, len(x), nets.BATCH))
        return x[idx], y[idx]

    with learner.progress(learner.budget.steps, "learned: train the inverter") as bar:
        trained = nets.fit(model, batch, torch.nn.functional.l1_loss, learner.budget, bar)
    return model, trained


@register
class LearnedInverter(Attack):
    name = "learned"
    summary = "a U-Net trained on the attacker's public images under fresh keys of its own maps ciphertext to plain"
    needs_learner = True

    def not_applicable(self, target: Target) -> str | None:
        return "no key: the images are not encrypted" if target.scope is None else None

    def run(self, ciphertexts, target, pairs=None, learner: Learner | None = None):
        from . import nets

        public = learner.public.images
        own = attacker_encrypt(target.method, target.params, "image", public, learner.budget.seed)
        model, trained = _train_inverter(own, public, learner)
        images = nets.as_images(nets.predict(model, nets.as_input(ciphertexts)))
        return Outcome(images, {"trained_on": len(public), **trained.to_dict()})


def variant_inverses(variants: PixelVariants, channels: int) -> np.ndarray:
    """For each variant t, the variant u that undoes it (the variants form a group)."""
    probe = np.array([10, 70, 200][:channels], np.uint8).reshape(1, 1, 1, channels)  # distinct, none 255 − another
    moved = [variants.apply(probe, t) for t in range(len(variants))]
    return np.array([next(u for u in range(len(variants)) if np.array_equal(variants.apply(m, u), probe)) for m in moved])


@register
class LearnedShared(Attack):
    name = "learned-shared"
    summary = "fr-shared's reconstruction, its global colour order/negation chosen by a net trained on public images, not by a viewer"
    needs_learner = True

    def not_applicable(self, target: Target) -> str | None:
        if target.cipher.family != "pixel" or target.scope is None:
            return "not a keyed pixel-wise method: no fr-shared reconstruction to start from"
        if target.scope != "dataset":
            return "needs a dataset-scope key (fr-shared's premise)"
        return None

    def run(self, ciphertexts, target, pairs=None, learner: Learner | None = None):
        torch = require_torch()
        from . import nets

        cand = target.candidates
        shared, _ = greedy_scan(ciphertexts, cand, shared=True)
        variants = PixelVariants(cand)
        undo = variant_inverses(variants, target.shape[2])
        public = learner.public.images
        x = nets.as_input(public)
        model = nets.seeded(learner.budget.seed, lambda: nets.SmallCNN(x.shape[1], len(variants)))
        src, xor = torch.from_numpy(cand.inv_src), torch.from_numpy(cand.inv_xor.astype(np.float32) / 255)

        def batch(rng):
            # public images, each under a random global variant; the label is the variant
            idx = torch.from_numpy(rng.integers(0, len(x), nets.BATCH))
            t = torch.from_numpy(rng.integers(0, len(variants), nets.BATCH))
            moved = torch.take_along_dim(x[idx], src[t][:, :, None, None], dim=1)
            return (moved - xor[t][:, :, None, None]).abs(), t  # v ^ 255 is 1 - v on [0, 1]

        with learner.progress(learner.budget.steps, "learned-shared: train the variant classifier") as bar:
            trained = nets.fit(model, batch, torch.nn.functional.cross_entropy, learner.budget, bar)
        votes = torch.log_softmax(nets.predict(model, nets.as_input(shared)), 1).sum(0)
        seen = int(votes.argmax())
        stats = {"candidates": len(cand), "trained_on": len(public), **trained.to_dict()}
        return Outcome(variants.apply(shared, int(undo[seen])), stats)
