"""The recognition score: what an attack's reconstructions give away semantically, which PSNR
and SSIM miss (fr-basic's folded images score low PSNR and are plainly recognisable).

The audit trains a classifier (nets.SmallCNN) on the attacker's public plain images and their
labels, then classifies the plain scored images (the classifier's own accuracy: the ceiling),
and each attack's reconstructions of them. Chance is the share of the largest class among the
scored images — what always answering that class scores (1/classes on a balanced set).

The classifier never sees a reconstruction while training: an attacker who trained it on its
own reconstructions would recognise more, so these accuracies are lower bounds too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .nets import BATCH, SmallCNN, Trained, as_input, fit, predict, seeded
from .public import Budget, PublicImages


class Recogniser:
    def __init__(self, model: torch.nn.Module):
        self.model = model

    @classmethod
    def train(cls, public: PublicImages, classes: int, budget: Budget, bar=None) -> tuple[Recogniser, Trained]:
        x, y = as_input(public.images), torch.from_numpy(public.labels)
        model = seeded(budget.seed, lambda: SmallCNN(x.shape[1], classes))

        def batch(rng):
            idx = torch.from_numpy(rng.integers(0, len(x), BATCH))
            flip = torch.from_numpy(rng.random(BATCH) < 0.5)
            xb = x[idx]
            return torch.where(flip[:, None, None, None], xb.flip(-1), xb), y[idx]  # mirror half: a cheap augmentation

        trained = fit(model, batch, F.cross_entropy, budget, bar)
        return cls(model), trained

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        guess = predict(self.model, as_input(images)).argmax(1).numpy()
        return float(np.mean(guess == labels))


def chance(labels: np.ndarray) -> float:
    return float(np.bincount(labels).max() / len(labels))
