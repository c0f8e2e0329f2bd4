"""Which dataset the user means, not just one the key made.

A manifest's MAC proves that the key wrote it, not that it is the dataset the user has in mind:
a server holding two datasets of one key (a private ``pe`` one with image keys, and an ``np``
one with a dataset key, made to reproduce the paper) can serve the second where the first was,
and a query encrypted "like" it would go out under the shared mask that one known pair of the
second reveals. So every dataset of manifest version 3 carries a random ``dataset_id`` under the
MAC, and the client binds a location to the id it expects:

* ``ppencrypt dataset`` remembers, on this machine, the id of every dataset it writes, by where
  it wrote it (the folder, resolved, or the URL without credentials) — in
  ``$PPENCRYPT_STATE/datasets.json`` (default ``~/.local/state/ppencrypt``; ids and places,
  nothing secret);
* a command holding the key may be told the id (``--dataset-id``), e.g. on another machine.

:func:`check` runs after the MAC: a manifest whose id is not the one expected for the place it
was read from is refused, however valid its MAC.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import write_file
from ..errors import ManifestError
from ..formats import Dataset, Location, Manifest

STATE_ENV = "PPENCRYPT_STATE"
FILE = "datasets.json"
VERSION = 1


def state_dir() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ppencrypt"


def place(loc: Location) -> str:
    """Where a dataset lives, as the binding names it: a resolved folder or a URL as shown."""
    return str(Path(loc.root).resolve()) if loc.local else loc.shown()


def _read() -> dict[str, dict]:
    path = state_dir() / FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError):
        raise ManifestError(f"{path}: not a ppencrypt state file; move it away to start a new one") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("datasets"), dict):
        raise ManifestError(f"{path}: not a ppencrypt state file; move it away to start a new one")
    return doc["datasets"]


def remember(loc: Location, m: Manifest) -> None:
    """Record the id of the dataset ppencrypt just wrote at ``loc``."""
    if m.dataset_id is None or m.cipher.key_id is None:
        return
    known = _read()
    known[place(loc)] = {"dataset_id": m.dataset_id, "key_id": m.cipher.key_id}
    path = state_dir() / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, (json.dumps({"version": VERSION, "datasets": known}, indent=1, sort_keys=True) + "\n").encode())


def check(ds: Dataset, key_id: str, dataset_id: str | None = None) -> None:
    """Refuse ``ds`` (its MAC already checked) unless it is the dataset expected at its place:
    ``dataset_id`` when given, else the one this machine's ppencrypt wrote there, if any."""
    m, where = ds.manifest, place(ds.loc)
    if dataset_id is not None:
        want, why = dataset_id.lower(), "--dataset-id"
    else:
        entry = _read().get(where)
        if entry is None or entry.get("key_id") != key_id:
            return
        want, why = entry.get("dataset_id"), f"ppencrypt dataset wrote there ({state_dir() / FILE})"
    if m.dataset_id != want:
        got = "none (manifest version {})".format(m.version) if m.dataset_id is None else m.dataset_id
        raise ManifestError(
            f"{ds.loc.shown()}: holds dataset {got}, not {want} as {why} says: another dataset of this key "
            "was put in its place; refusing it"
        )
