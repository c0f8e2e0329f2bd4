"""``learned-features``: the learned attacker on the key-invariant block features — what an
attacker gets from exactly what the server's network (``pptrain --adapt blockset``) sees.

A method whose network needs no key (``bsm``: the cipher's ``adapt`` is ``blockset``) must
give that network features that every key leaves unchanged — per block, its content up to a
rotation / flip, a sign per component and a colour order, and the bag of blocks without their
positions. Whatever those features tell the server's classifier, they tell anyone who knows the
method, since they are the same for the ciphertext and its plain image. They are the same for
every method whose block maps lie among those (the cipher's ``bag_of_blocks``: ``bsm`` and
``etc``, whose one NP bit per block is a sign per component, all equal), whichever network its
server trains: the attack reads the data, not the server's model. The attacker takes
them as the server does (the same construction: pptrain/blockset.py), encrypts its public
images under fresh keys of its own (attacker.py), and trains a network from the bag of block
features to the plain image; its reconstructions are scored like every other attack's — PSNR,
SSIM and what the audit's classifier recognises in them. Where the public images carry the
dataset's classes it also trains a class head on the same bag beside the decoder (the
reconstruction is drawn from a representation that knows the class, as an attacker would
choose), so the recognition score reads how much of the class the invariant features carry.

Why it matters: the jigsaw attacks the blocks' arrangement, the ``learned`` U-Net the
ciphertext's pixels; neither uses the invariance the training relies on. This one does, so on
``bsm`` its recognition rises with the accuracy the same features give the server: the
frontier's trade-off measured on one method (docs/privacy.md).

torch is imported by extra.require_torch only when the attack runs (``--learned``).
"""

from __future__ import annotations

import numpy as np

from .attacker import attacker_encrypt
from .attacks import Attack, Outcome, Target, register
from .extra import require_torch
from .public import Learner

HIDDEN = 64  # block embedding width, as pptrain's blockset network
DECODE_SIDE = 32  # the decoder draws at most 32 x 32 and is scaled to the image: a CPU audit's budget
CLASS_WEIGHT = 0.1  # of the class head's cross-entropy beside the decoder's L1


def build(channels: int, block: int, shape: tuple[int, int, int], classes: int):
    """The attacker's network for images of ``shape`` (H, W, C) cut into ``block``-sided blocks:
    block features invariant to every block's key, pooled over the blocks, then a decoder to
    the image and (``classes`` > 0) a class head."""
    torch = require_torch()
    from torch import nn
    from torch.nn import functional as F

    h, w, c = shape
    side = (min(h, DECODE_SIDE), min(w, DECODE_SIDE))

    class BlockFeatureAttacker(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(block * block, HIDDEN)
            self.mix = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.ReLU(inplace=True))
            self.norm = nn.LayerNorm(2 * HIDDEN)
            self.decode = nn.Sequential(nn.Linear(2 * HIDDEN, 256), nn.ReLU(inplace=True), nn.Linear(256, c * side[0] * side[1]))
            self.classify = nn.Linear(2 * HIDDEN, classes) if classes else None

        def bag(self, x):
            """N x C x H x W in [0, 1] -> N x 2·HIDDEN: the same for every key of the cipher."""
            n = x.shape[0]
            z = x * 2 - 1  # v -> 255 - v is a sign change
            blocks = z.reshape(n, c, h // block, block, w // block, block).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c, block, block)
            orbit = torch.stack([torch.rot90(blocks, g % 4, dims=(-2, -1)).flip(-1) if g >= 4 else torch.rot90(blocks, g, dims=(-2, -1))
                                 for g in range(8)], dim=-3).flatten(-2)  # fmt: skip
            a = F.linear(orbit, self.embed.weight)  # N, nb, C, 8, HIDDEN
            folded = torch.relu(a + self.embed.bias) + torch.relu(self.embed.bias - a)  # even in a: the sign of a component
            tokens = self.mix(torch.cat([folded.mean(2), folded.amax(2)], -1)).mean(2)  # any colour order; any symmetry
            return self.norm(torch.cat([tokens.mean(1), tokens.amax(1)], -1))  # any order of the blocks

        def forward(self, x):
            e = self.bag(x)
            image = 0.5 + self.decode(e).reshape(-1, c, *side)
            if side != (h, w):
                image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
            return image, (self.classify(e) if self.classify is not None else None)

    return BlockFeatureAttacker()


def trained_attacker(target: Target, learner: Learner):
    """The attacker's network trained on its public images under fresh keys of its own, and
    how its training went; once per audit."""
    key = ("block-features", target.method, repr(sorted(target.params.items())))
    if key not in learner.cache:
        torch = require_torch()
        from torch.nn import functional as F

        from . import nets

        public = learner.public
        fresh = "image" if "image" in target.cipher.scopes else target.scope  # a fresh key per image where the method has them
        own = attacker_encrypt(target.method, target.params, fresh, public.images, learner.budget.seed, purpose="block-features")
        x, y = nets.as_input(own), nets.as_input(public.images)
        labels = torch.from_numpy(public.labels.astype(np.int64)) if public.same_classes else None
        classes = int(public.labels.max()) + 1 if labels is not None else 0
        model = nets.seeded(learner.budget.seed, lambda: build(x.shape[1], target.cipher.block, target.shape, classes))

        def batch(rng):
            idx = torch.from_numpy(rng.integers(0, len(x), nets.BATCH))
            return x[idx], (y[idx], labels[idx] if labels is not None else None)

        def loss(out, truth):
            image, logits = out
            value = F.l1_loss(image, truth[0])
            return value if logits is None else value + CLASS_WEIGHT * F.cross_entropy(logits, truth[1])

        with learner.progress(learner.budget.steps, "learned-features: train the attacker") as bar:
            trained = nets.fit(model, batch, loss, learner.budget, bar)

        @torch.no_grad()
        def invert(images: np.ndarray) -> np.ndarray:
            model.eval()
            t = nets.as_input(images)
            return nets.as_images(torch.cat([model(t[i : i + 512])[0] for i in range(0, max(len(t), 1), 512)]))

        learner.cache[key] = invert, trained, classes
    return learner.cache[key]


@register
class LearnedFeatures(Attack):
    name = "learned-features"
    summary = "a network trained on the attacker's public images maps the key-invariant block features (what blockset sees) to the image"
    needs_learner = True

    def not_applicable(self, target: Target) -> str | None:
        if target.scope is None or not target.cipher.bag_of_blocks:
            return "the method's blocks are not the plain blocks up to the maps key-invariant block features ignore"
        return None

    def run(self, ciphertexts, target, pairs=None, learner: Learner | None = None):
        invert, trained, classes = trained_attacker(target, learner)
        return Outcome(invert(ciphertexts), {"trained_on": len(learner.public.images), "class_head": bool(classes), **trained.to_dict()})
