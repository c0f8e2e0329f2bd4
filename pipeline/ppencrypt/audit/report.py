"""What an audit produced, and its three renderings: the table on stdout, report.json, and
report.png (a grid of plain, encrypted and reconstructed images).

report.json holds scores, timings, key-space sizes and the attacks' statistics — counts, never
key material. report.png shows plain images and reconstructions: it is as private as the plain
data, and is refused inside the encrypted dataset (which goes to the server).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_writer
from ..pictures import GAP, MIN_TILE, grid, refuse_plain_inside, to_pil
from .keyspace import KeySpace
from .metrics import Scores

HEADER = 14  # pixels of caption above each column of report.png


@dataclass
class RecognitionInfo:
    """The recognition classifier (recognition.py): its accuracy on the plain scored images, and
    chance — the largest class share among them."""

    plain_accuracy: float
    chance: float
    classes: int
    classifier: dict  # how it was trained (nets.Trained.to_dict)

    def to_dict(self) -> dict:
        return {"plain_accuracy": round(self.plain_accuracy, 4), "chance": round(self.chance, 4),
                "chance_rule": "largest class share among the scored images", "classes": self.classes,
                "classifier": self.classifier}  # fmt: skip


@dataclass
class AttackRow:
    name: str
    summary: str
    scores: Scores | None  # None when the attack does not apply
    not_applicable: str | None = None
    seconds: float = 0.0  # the attack itself
    scoring_seconds: float = 0.0  # PSNR and SSIM of its reconstructions
    stats: dict = field(default_factory=dict)
    note: str = ""
    shown: np.ndarray | None = None  # the first few reconstructions, for report.png
    recognition: float | None = None  # the recognition classifier's accuracy on the reconstructions

    def to_dict(self) -> dict:
        doc = {"attack": self.name, "summary": self.summary}
        if self.scores is None:
            return {**doc, "not_applicable": self.not_applicable}
        recognition = {} if self.recognition is None else {"recognition_accuracy": round(self.recognition, 4)}
        return {**doc, **self.scores.to_dict(), **recognition, "seconds": round(self.seconds, 3),
                "scoring_seconds": round(self.scoring_seconds, 3), "stats": self.stats, "note": self.note}  # fmt: skip


@dataclass
class AuditReport:
    dataset: str
    method: str
    params: dict
    scope: str | None
    shape: tuple[int, int, int]
    split: str
    known: int  # pairs given to known-plaintext, not scored
    scored: int
    key_space: KeySpace
    rows: list[AttackRow]
    seconds: float = 0.0  # the whole audit: reading, attacks, scoring
    plain_shown: np.ndarray | None = None
    learning: dict | None = None  # --learned: the attacker's public images and training budget
    recognition: RecognitionInfo | None = None  # --learned, when the public images carry the classes
    authenticated: bool = False  # the key checked the manifest's MAC (audit --key): method and scope are the client's
    warnings: list[str] = field(default_factory=list)  # for the user: a version 1 manifest, which has no MAC

    @property
    def manifest_trust(self) -> str:
        return "authenticated" if self.authenticated else "unauthenticated"

    def to_dict(self) -> dict:
        h, w, c = self.shape
        return {
            "dataset": self.dataset,
            "manifest": self.manifest_trust,
            "method": self.method,
            "params": self.params,
            "key_scope": self.scope,
            "image": {"height": h, "width": w, "channels": c},
            "split": self.split,
            "known_pairs": self.known,
            "scored_images": self.scored,
            "key_space": self.key_space.to_dict(),
            "psnr_cap_db": 100.0,
            "attacks": [r.to_dict() for r in self.rows],
            "learned": self.learning,
            "recognition": None if self.recognition is None else self.recognition.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def _stats_text(stats: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())


def _learning_lines(report: AuditReport) -> list[str]:
    if report.learning is None:
        return []
    pub = report.learning["public"]
    lines = [f"learned attacker: {pub['images']} public images of {pub['source']} ({', '.join(pub['splits'])})"
             + (f", {pub['dropped_as_scored']} dropped as scored images" if pub["dropped_as_scored"] else "")
             + f"; at most {report.learning['train_steps']} steps or {report.learning['train_seconds']:g} s per model, seed {report.learning['seed']}"]  # fmt: skip
    rec = report.recognition
    if rec is None:
        lines.append("recognition: not scored (the public images do not carry the dataset's classes)")
    else:
        lines.append(f"recognition: a classifier trained on the public images scores {rec.plain_accuracy:.1%} on the plain "
                     f"scored images; chance (largest class share) {rec.chance:.1%}")  # fmt: skip
    return lines


def _trust_line(report: AuditReport) -> str:
    if report.authenticated:
        return "manifest: authenticated with the key (its MAC checks): method, scope and key space are the ones ppencrypt wrote"
    return ("manifest: unauthenticated: method, scope and key space are what the manifest says, which the server can edit "
            "(pass --key to check its MAC)")


def table(report: AuditReport) -> str:
    h, w, c = report.shape
    recog_head = f" {'recog.':>7}" if report.recognition is not None else ""
    scope = f"{report.scope}-scope key" if report.scope else "no key"
    ks = report.key_space
    bits = "unknown" if ks.to_dict()["bits"] is None else f"{ks.bits:.1f} bits"
    lines = [
        f"{report.dataset}: {report.method} ({scope}), {w}x{h}x{c}, split {report.split}: "
        f"{report.scored} images scored, {report.known} known pair{'s' * (report.known != 1)} not scored",
        _trust_line(report),
        "key space: none (no key)" if ks.per == "nothing" else f"key space: {bits} per key, one key per {ks.per}"
        + (f" (a search over master keys: at most {ks.effective_bits:.0f} bits)" if ks.bits > ks.effective_bits else ""),
        *_learning_lines(report),
        "",
        f"{'attack':<16} {'PSNR mean':>9} {'max':>6} {'SSIM mean':>9} {'max':>6} {'exact':>11}{recog_head} {'time':>7}  found",
    ]  # fmt: skip
    for r in report.rows:
        if r.scores is None:
            lines.append(f"{r.name:<16} {'n/a: ' + r.not_applicable}")
            continue
        s = r.scores
        found = "; ".join(x for x in (_stats_text(r.stats), r.note) if x)
        recog = f" {r.recognition:>7.1%}" if report.recognition is not None else ""
        lines.append(
            f"{r.name:<16} {s.psnr.mean:>9.2f} {s.psnr.max:>6.1f} {s.ssim.mean:>9.3f} {s.ssim.max:>6.3f} "
            f"{f'{s.exact}/{s.count}':>11}{recog} {r.seconds:>6.2f}s  {found}"
        )
    lines += ["", "PSNR in dB (100 = identical); max = the image that leaks most. "
              f"Audit took {report.seconds:.1f} s."]  # fmt: skip
    return "\n".join(lines) + "\n"


def picture(report: AuditReport) -> Image.Image:
    """Columns: plain, then every attack that ran (identity is the encrypted image); rows: the
    first few scored images."""
    rows = [r for r in report.rows if r.shown is not None]
    columns = [("plain", report.plain_shown)] + [(r.name, r.shown) for r in rows]
    n, h, w, c = report.plain_shown.shape
    scale = max(1, -(-MIN_TILE // max(h, w)))
    # tile t of the grid is image t // columns of column t % columns
    tiles = np.stack([im for _, im in columns], axis=1).reshape(-1, h, w, c)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    body = to_pil(grid(tiles, len(columns))).convert("RGB")
    out = Image.new("RGB", (body.width, body.height + HEADER), "white")
    out.paste(body, (0, HEADER))
    draw = ImageDraw.Draw(out)
    for i, (name, _) in enumerate(columns):
        draw.text((GAP + i * (w * scale + GAP) + 2, 2), name, fill="black")
    return out


def _replace(path: Path, write) -> None:
    with atomic_writer(path) as f:
        write(f)


def report_paths(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """``-o PREFIX`` -> PREFIX.json, PREFIX.png (a .json or .png suffix on PREFIX is dropped)."""
    p = Path(prefix)
    base = p.with_suffix("") if p.suffix.lower() in (".json", ".png") else p
    return Path(f"{base}.json"), Path(f"{base}.png")


def write_report(report: AuditReport, prefix: str | os.PathLike, dataset_root: str | os.PathLike) -> tuple[Path, Path]:
    json_path, png_path = report_paths(prefix)
    for path in (json_path, png_path):  # report.png holds plain pixels: never beside the shards
        refuse_plain_inside(path, dataset_root)
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    _replace(json_path, lambda f: f.write(text.encode("utf-8")))
    _replace(png_path, lambda f: picture(report).save(f, format="PNG"))
    return json_path, png_path
