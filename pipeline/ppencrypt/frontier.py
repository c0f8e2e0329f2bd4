"""The measured privacy–accuracy frontier, as this package ships it (issue 25): for each method ×
key scope, the test accuracy it trained to on Fashion-MNIST and how many of the best attack's
reconstructions a classifier recognised — said where a user chooses a method
(``ppencrypt dataset --help``, README.md's method table).

One source of truth: ``python -m experiments frontier --numbers`` writes ``frontier.json``
beside this module from the cells kept in docs/frontier.jsonl, with the budget they were
measured at; this module reads it and says each cell in one phrase, "acc 86.4 %, recognised
65.6 % (chance 13.2 %)". An installation without the file (or with one it cannot read) says
"not measured": the help never fails over it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from .ciphers import cipher_class, method_names

FILE = "frontier.json"  # package data of ppencrypt
NOT_MEASURED = "not measured"
MAX_BYTES = 1 << 20  # our own file, a few KiB: anything larger is not it


@dataclass(frozen=True, kw_only=True)
class Point:
    """One measured cell."""

    method: str
    scope: str | None  # None: plain
    accuracy: float  # final test accuracy, fraction
    attack: str  # the attack whose reconstructions were recognised most
    recognition: float | None  # that attack's recognition, fraction


@dataclass(frozen=True, kw_only=True)
class Frontier:
    dataset: str  # "Fashion-MNIST"
    budget: dict  # the budget the cells were measured at, as the frontier keeps it
    shown: str  # that budget in words
    plain_recognition: float | None
    chance: float | None
    points: tuple[Point, ...]

    def at(self, method: str, scope: str | None) -> Point | None:
        return next((p for p in self.points if (p.method, p.scope) == (method, scope)), None)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "budget": self.budget, "shown": self.shown, "plain_recognition": self.plain_recognition,
                "chance": self.chance, "points": [vars(p) for p in self.points]}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> Frontier:
        return cls(**{**d, "points": tuple(Point(**p) for p in d["points"])})


def load() -> Frontier | None:
    """The shipped frontier, or None when the installation has none or it cannot be read."""
    try:
        text = resources.files(__package__).joinpath(FILE).read_bytes()[:MAX_BYTES].decode("utf-8")
        return Frontier.from_dict(json.loads(text))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def phrase(frontier: Frontier | None, method: str, scope: str | None) -> str:
    """What was measured for ``method`` under ``scope``, in one phrase."""
    p = frontier.at(method, scope) if frontier is not None else None
    if p is None:
        return NOT_MEASURED
    return f"acc {_pct(p.accuracy)}, recognised {_pct(p.recognition)} (chance {_pct(frontier.chance)})"


def cells() -> list[tuple[str, str | None]]:
    """Every method × key scope it supports (a keyless method once), registry order."""
    return [(m, s) for m in method_names() for s in (cipher_class(m).scopes or (None,))]


def _scope(scope: str | None) -> str:
    return {"image": "key per image", "dataset": "dataset key", None: "no key"}[scope]


def intro(frontier: Frontier | None) -> str:
    if frontier is None:
        return f"Privacy and accuracy: {NOT_MEASURED} (this installation has no ppencrypt/frontier.json)."
    plain = f"; plain images are recognised {_pct(frontier.plain_recognition)}" if frontier.plain_recognition is not None else ""
    return (f"Measured on {frontier.dataset} by the frontier (python -m experiments frontier, docs/privacy.md), at one budget: "
            f"{frontier.shown}. acc: final test accuracy; recognised: the share of the best attack's reconstructions "
            f"that a classifier trained on plain public images recognises{plain}.")  # fmt: skip


def _by(frontier: Frontier | None, method: str, scope: str | None) -> str:
    p = frontier.at(method, scope) if frontier is not None else None
    return f", by {p.attack}" if p is not None else ""


def help_text(frontier: Frontier | None = None) -> str:
    """The lines ``ppencrypt dataset --help`` ends with (click's \\b keeps them unwrapped)."""
    frontier = frontier if frontier is not None else load()
    lines = [f"  {m + ', ' + _scope(s):<22} {phrase(frontier, m, s)}{_by(frontier, m, s)}" for m, s in cells()]
    by = " by: that attack (identity: the images as the server holds them)." if frontier is not None else ""
    return intro(frontier) + by + "\n\n\b\n" + "\n".join(lines)


def method_table(frontier: Frontier | None) -> str:
    """README.md's method table: each method and key scope, what it is and what was measured."""
    out = [intro(frontier), "", "| `--method` | `--key-scope` | measured | best attack | what it is |", "|---|---|---|---|---|"]
    for m, s in cells():
        p = frontier.at(m, s) if frontier is not None else None
        attack = f"`{p.attack}`" if p is not None else ""
        out.append(f"| `{m}` | {s or '—'} | {phrase(frontier, m, s)} | {attack} | {cipher_class(m).summary} |")
    return "\n".join(out) + "\n"
