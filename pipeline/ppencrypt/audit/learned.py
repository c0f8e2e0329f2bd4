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
9.0 dB / SSIM 0.23, below fr-basic, against 17.8 dB / 0.74 (docs/privacy.md).

``learned-shared`` — under a dataset-scope key, what the shared key adds: fr-shared's
reconstruction (the key recovered from the ciphertexts up to one global colour order and
negation), in the global variant nearest to what the learned inverter makes of the same
ciphertexts — the step fr-shared leaves to a viewer, done here without plain images. The
variant is shared, so all N images decide it together. (A 48-way classifier of the variant,
trained on the public images under every variant, picked a wrong one on the CIFAR-10 images
after 300 steps; the inverter has already learned what the domain looks like.)
"""

from __future__ import annotations

import numpy as np

from .attacker import attacker_encrypt
from .attacks import Attack, Outcome, Target, register
from .extra import require_torch
from .greedy import greedy_scan
from .public import Learner
from .variants import PixelVariants


def inverter(target: Target, learner: Learner):
    """The U-Net trained for ``target``'s method on the attacker's public images, encrypted
    under a fresh key of its own per image, and how its training went; trained once per audit
    (both learned attacks use it)."""
    key = ("inverter", target.method, repr(sorted(target.params.items())))
    if key not in learner.cache:
        torch = require_torch()
        from . import nets

        public = learner.public.images
        fresh = "image" if "image" in target.cipher.scopes else target.scope  # a method without image scope: its one key
        own = attacker_encrypt(target.method, target.params, fresh, public, learner.budget.seed)
        x, y = nets.as_input(own), nets.as_input(public)
        model = nets.seeded(learner.budget.seed, lambda: nets.UNet(x.shape[1]))

        def batch(rng):
            idx = torch.from_numpy(rng.integers(0, len(x), nets.BATCH))
            return x[idx], y[idx]

        with learner.progress(learner.budget.steps, "learned: train the inverter") as bar:
            trained = nets.fit(model, batch, torch.nn.functional.l1_loss, learner.budget, bar)
        learner.cache[key] = (lambda images: nets.as_images(nets.predict(model, nets.as_input(images)))), trained
    return learner.cache[key]


@register
class LearnedInverter(Attack):
    name = "learned"
    summary = "a U-Net trained on the attacker's public images under fresh keys of its own maps ciphertext to plain"
    needs_learner = True

    def not_applicable(self, target: Target) -> str | None:
        return "no key: the images are not encrypted" if target.scope is None else None

    def run(self, ciphertexts, target, pairs=None, learner: Learner | None = None):
        invert, trained = inverter(target, learner)
        return Outcome(invert(ciphertexts), {"trained_on": len(learner.public.images), **trained.to_dict()})


@register
class LearnedShared(Attack):
    name = "learned-shared"
    summary = "fr-shared's reconstruction in the global colour order/negation nearest the learned inverter's output, not a viewer's pick"
    needs_learner = True

    def not_applicable(self, target: Target) -> str | None:
        if target.cipher.family != "pixel" or target.scope is None:
            return "not a keyed pixel-wise method: no fr-shared reconstruction to start from"
        if target.scope != "dataset":
            return "needs a dataset-scope key (fr-shared's premise)"
        return None

    def run(self, ciphertexts, target, pairs=None, learner: Learner | None = None):
        cand = target.candidates
        shared, _ = greedy_scan(ciphertexts, cand, shared=True)
        invert, _ = inverter(target, learner)
        guess = invert(ciphertexts).astype(np.float32)
        variants = PixelVariants(cand)
        # one global variant for all N images (the key is shared): the one nearest the net's guess
        distance = [float(((variants.apply(shared, t).astype(np.float32) - guess) ** 2).sum()) for t in range(len(variants))]
        best = int(np.argmin(distance))
        stats = {"candidates": len(cand), "variant_margin": round(sorted(distance)[1] / max(distance[best], 1e-9), 3) if len(distance) > 1 else None}
        return Outcome(variants.apply(shared, best), stats)
