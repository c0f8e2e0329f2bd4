"""``ppencrypt audit``: run every attack on an encrypted dataset and score it against the plain
images it came from.

The data owner runs the audit: SRC (the plain source) supplies the images to score with and the
k known pairs, nothing else reaches an attack. The split's first k samples are the pairs, the
next N are scored by every attack (so every row is over the same images, and none of them is a
pair). The plain images are matched to samples by position, which holds because ``ppencrypt
dataset`` numbers samples in source order; a dataset made with ``--skip-bad`` that skipped files
cannot be matched and is refused, and the labels are compared as a check.

With ``--learned`` the attacker also holds public images of its own (public.py; never the ones
scored), the learned attacks train on them, and a classifier trained on them scores every
attack's reconstructions for recognition (recognition.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import SourceError
from ..formats import Batch, Dataset, Manifest, open_dataset, shown_url
from ..keys import MasterKey, open_keyed
from ..progress import ProgressFactory, no_progress
from ..sources import open_source, read_head
from .attacks import Attack, KnownPairs, Outcome, Target, attacks
from .extra import require_torch
from .keyspace import key_space
from .metrics import Scores, psnr
from .public import Budget, Learner, load_public
from .report import AttackRow, AuditReport, RecognitionInfo
from .variants import Variants

VIEWER_IMAGES = 16  # images a viewer looks at to pick one global variant for a whole set (fr-shared)


@dataclass
class AuditOptions:
    split: str = "test"
    count: int = 1000  # N: images scored
    known: int = 1  # k: known pairs for known-plaintext
    shown: int = 4  # images in report.png
    learned: bool = False  # also the learned attacks and the recognition score (torch)
    public: str | None = None  # the learned attacker's images; None: SRC's other splits
    public_count: int = 5000  # public images it trains on
    train_steps: int = 1000  # optimiser steps per learned model
    train_seconds: float = 180.0  # wall-clock limit per learned model: a safeguard, not the budget
    seed: int = 0  # the attacker's keys, initial weights and batches


def load_plain(src: str, m: Manifest, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` plain images and labels of ``split`` in SRC, as the dataset was made from
    it (same --size); SourceError when SRC cannot be the dataset's source."""
    source = open_source(src, size=m.size)
    if source.shape != m.shape:
        (h, w, c), (dh, dw, dc) = source.shape, m.shape
        raise SourceError(f"{src}: its images are {w}x{h}x{c}, the dataset's are {dw}x{dh}x{dc}: not the dataset's source")
    if split not in source.splits:
        raise SourceError(f"{src}: no split {split!r} (it has {', '.join(source.splits)})")
    loader = source.splits[split]
    if loader.count is not None and loader.count != m.splits[split].count:  # a streamed split's is known once read
        raise SourceError(f"{src}: split {split} has {loader.count} images, the dataset {m.splits[split].count}: not the dataset's source")
    if source.classes != m.classes and not source.numbered:
        raise SourceError(f"{src}: its classes differ from the dataset's: not the dataset's source")
    return read_head(loader, n)


def open_audited(out: str, key: MasterKey | None, dataset_id: str | None) -> tuple[Dataset, bool, list[str]]:
    """The dataset, whether its manifest is authenticated, and warnings. The report's header and
    key-space line come from the manifest's method and scope, which the server can edit: with the
    key, the MAC (and the dataset id) is checked first, as verify and decrypt check it; without,
    the report says it is unauthenticated. A version 1 manifest has no MAC: it passes with the
    warning, unauthenticated."""
    if key is None:
        return open_dataset(out), False, []
    keyed = open_keyed(out, key, dataset_id=dataset_id)
    return keyed.dataset, not keyed.warnings, keyed.warnings


def read_samples(out: str, opts: AuditOptions, ds: Dataset | None = None) -> tuple[Manifest, Batch]:
    """The dataset's manifest and the first k + N samples of the split (of ``ds``, when opened already)."""
    ds = ds if ds is not None else open_dataset(out)
    m = ds.manifest
    reader = ds.split(opts.split)  # a missing split is a ManifestError naming the ones there are
    if m.skipped:
        raise SourceError(
            f"{out}: made with --skip-bad, which skipped {m.skipped} source files; the audit cannot tell which plain "
            "image belongs to which sample"
        )
    available = m.splits[opts.split].count
    if available <= opts.known:
        raise SourceError(f"{out}: split {opts.split} has {available} images; {opts.known} known pairs leave none to score")
    return m, reader.head(opts.known + opts.count)


def pick_variant(images: np.ndarray, plain: np.ndarray, variants: Variants) -> tuple[np.ndarray, str]:
    """The global variant a viewer would pick: for a set-wide one (fr-shared), judged on a few
    images and applied to all of them; for one per image (jigsaw), on each image itself."""
    if variants.per_image:
        scores = np.stack([psnr(variants.apply(images, t), plain) for t in range(len(variants))])  # T, N
        best = scores.argmax(0)
        chosen = np.empty_like(images)
        for t in np.unique(best):
            chosen[best == t] = variants.apply(images[best == t], int(t))
        return chosen, f"per image, one global variant of {len(variants)} picked as a viewer would, by eye"
    look = slice(0, VIEWER_IMAGES)
    best = max(range(len(variants)), key=lambda t: psnr(variants.apply(images[look], t), plain[look]).mean())
    return variants.apply(images, best), f"one global variant of {len(variants)} picked as a viewer would, by eye on {min(len(images), VIEWER_IMAGES)} images"


def run_attack(attack: Attack, ciphertexts: np.ndarray, plain: np.ndarray, target: Target, pairs: KnownPairs, shown: int,
               learner: Learner | None = None, recognise: Callable[[np.ndarray], float] | None = None) -> AttackRow:  # fmt: skip
    reason = attack.not_applicable(target)
    if attack.needs_learner and learner is None:
        reason = "a learned attack: pass --learned"
    if reason:
        return AttackRow(attack.name, attack.summary, None, reason)
    start = time.perf_counter()
    extra = {"learner": learner} if attack.needs_learner else {}  # the public images only where declared
    outcome: Outcome = attack.run(ciphertexts, target, pairs if attack.needs_pairs else None, **extra)  # pairs likewise
    seconds = time.perf_counter() - start
    images, note = outcome.images, ""
    if outcome.variants is not None:
        images, note = pick_variant(images, plain, outcome.variants)
    start = time.perf_counter()
    scores = Scores.of(images, plain)
    recognition = recognise(images) if recognise is not None else None
    return AttackRow(attack.name, attack.summary, scores, None, seconds, time.perf_counter() - start, outcome.stats, note,
                     images[:shown], recognition)  # fmt: skip


def prepare_learning(src: str, m: Manifest, opts: AuditOptions, plain: np.ndarray, labels: np.ndarray,
                     progress: ProgressFactory) -> tuple[Learner, RecognitionInfo | None, Callable | None]:  # fmt: skip
    """The learned attacker's images and budget; the recognition classifier trained on them (when
    they carry the dataset's classes), its accuracy on the scored ``plain`` images, and the
    function that scores a reconstruction with it."""
    from .recognition import Recogniser, chance  # torch: run_audit checked it is there

    public = load_public(src, opts.public, m, opts.split, plain, opts.public_count)
    learner = Learner(public, Budget(opts.train_steps, opts.train_seconds, opts.seed), progress)
    if not public.same_classes:
        return learner, None, None
    scored, truth = plain[opts.known :], labels[opts.known :]
    with progress(opts.train_steps, "recognition: train the classifier") as bar:
        recogniser, trained = Recogniser.train(public, len(m.classes), learner.budget, bar)
    info = RecognitionInfo(recogniser.accuracy(scored, truth), chance(truth), len(m.classes), trained.to_dict())
    return learner, info, lambda images: recogniser.accuracy(images, truth)


def run_audit(out: str | os.PathLike, src: str | os.PathLike, opts: AuditOptions, progress: ProgressFactory = no_progress,
              key: MasterKey | None = None, dataset_id: str | None = None) -> AuditReport:  # fmt: skip
    """The audit of ``out`` against the plain images of ``src``; with ``key``, only once the key
    has authenticated the manifest (open_audited)."""
    start = time.perf_counter()
    out, src = str(out), str(src)
    if opts.learned:
        require_torch()  # before reading anything: a missing extra is a one-line error at once
    ds, authenticated, warnings = open_audited(out, key, dataset_id)
    m, batch = read_samples(out, opts, ds)
    plain, labels = load_plain(src, m, opts.split, len(batch))
    if len(labels) != len(batch) or not np.array_equal(labels, batch.labels):
        first = int(np.argmax(labels != batch.labels)) if len(labels) == len(batch) else min(len(labels), len(batch))
        raise SourceError(f"{src}: sample {first} of split {opts.split} has another label than in the dataset: not the dataset's source")
    k = opts.known
    pairs = KnownPairs(plain[:k], batch.images[:k])
    ciphertexts, truth = batch.images[k:], plain[k:]
    target = Target(m.cipher.method, dict(m.cipher.params), m.cipher.key_scope, m.shape)
    learner = recognition = recognise = None
    if opts.learned:
        learner, recognition, recognise = prepare_learning(src, m, opts, plain, labels, progress)
    rows = [run_attack(a, ciphertexts, truth, target, pairs, opts.shown, learner, recognise) for a in attacks()]
    return AuditReport(
        shown_url(out), target.method, target.params, target.scope, m.shape, opts.split, k, len(truth),
        key_space(target.method, target.params, target.scope, m.shape), rows, time.perf_counter() - start, truth[: opts.shown],
        learner_info(learner, opts), recognition, authenticated, warnings,
    )  # fmt: skip


def learner_info(learner: Learner | None, opts: AuditOptions) -> dict | None:
    if learner is None:
        return None
    return {"public": learner.public.to_dict(), "train_steps": opts.train_steps, "train_seconds": opts.train_seconds, "seed": opts.seed}
