"""``ppencrypt dataset --resume``: continue the job an interruption stopped (a kill -9, a
crash, a lost node, or an interrupt of a run that itself had ``--resume``).

The journal the interrupted job left at OUT (formats/journal.py) is server-side data, so
before anything in it is used:

* its MAC must check under the key's journal subkey (keys/mac.py): the server cannot write one,
  so it cannot make the client skip shards or take a salt of its choosing;
* it must bind this job — the key id, SRC (and each --split NAME=SRC) and OUT as shown, and
  every option that changes the bytes (method, parameters, scope, format, size, the shard size
  in samples, --skip-bad, the copies, --reproduce, the streamed sources' --classes,
  --image-column and --label-column): another job's journal, or this one's with other
  options, is refused with nothing changed, so a salt is never reused on other options (or,
  replayed, at another OUT);
* every file of every finished shard must be at OUT with its journaled size and SHA-256: the
  shards are kept up to the first one that is not, and the job continues after the last kept
  shard, re-reading the input from the task that shard ended in (the tasks before it are not
  run). The journaled digest of each kept shard's plain images completes the split's source
  digest (keys.SourceDigest) without reading them again;
* SRC must not have changed in place since the interrupted run: the journal binds its
  fingerprint (sources/fingerprint.py: per split, its inputs' names, sizes and versions — ETag,
  generation or mtime — and its classes file's SHA-256), so that kept shards of the old images
  never meet new shards of the new ones; a changed source is refused, naming SRC or the
  classes file: rerun without --resume.
"""

from __future__ import annotations

import hmac
from typing import Callable

from .errors import OutputError, SourceError
from .formats.journal import Journal, ShardEntry
from .formats.output import Output
from .keys import KeyUse, MasterKey, journal_mac


def journal_signer(key: MasterKey) -> Callable[[Journal], str]:
    return lambda j: journal_mac(key, j.signing_bytes())


def journal_check(key: MasterKey, bound: dict, use: KeyUse, dataset_id: str | None,
                  where: dict[str, tuple[str, str | None]]) -> Callable[[Journal, str], None]:  # fmt: skip
    """What ``--resume`` accepts: a journal this key wrote for this very job, from the source as
    it was (its fingerprint). ``dataset_id`` and ``use``'s salt, when fixed already
    (``--reproduce``), must be the journal's too. ``where``: per split, how messages name its
    SRC and its classes file."""

    def check(j: Journal, shown: str) -> None:
        if not isinstance(j.mac, str) or not hmac.compare_digest(journal_mac(key, j.signing_bytes()), j.mac):
            raise OutputError(f"{shown}: not a journal this key wrote (MAC mismatch); --resume refused, nothing changed")
        if j.binding != bound:
            for name, what in (("key_id", "key id"), ("src", "src"), ("splits", "--split sources"), ("out", "out")):
                if j.binding.get(name) != bound[name]:
                    raise OutputError(f"{shown}: the interrupted job had another {what} "
                                      f"({j.binding.get(name)}); --resume continues only the same job, nothing changed")  # fmt: skip
            theirs = j.binding.get("options") or {}
            option = next((k for k in bound["options"] if theirs.get(k) != bound["options"][k]), None)
            if option is None:
                changed = _changed(j.binding.get("inputs"), bound.get("inputs"), where)
                if changed is not None:
                    raise SourceError(f"{changed}; rerun without --resume to encrypt it anew (nothing changed at the output)")
                # a field this version does not bind
                raise OutputError(f"{shown}: the interrupted job was another job; rerun it as it was, or without --resume")
            raise OutputError(f"{shown}: the interrupted job had other options ({option}: {theirs.get(option)!r}, now "
                              f"{bound['options'][option]!r}); rerun it as it was, or without --resume")  # fmt: skip
        if dataset_id is not None and (j.dataset_id, j.salt) != (dataset_id, use.salt_hex):
            raise OutputError(f"{shown}: the interrupted job was not the reproduction of its --reproduce dataset; --resume refused")

    return check


def _changed(theirs: dict | None, ours: dict | None, where: dict) -> str | None:
    """What changed in place since the interrupted run, as a message's start; None: nothing
    this version can tell (a journal from before fingerprints: another job)."""
    if not isinstance(theirs, dict) or ours is None:
        return None
    if set(theirs) != set(ours) and ours:  # a split folder added or removed
        shown = next(iter(where.values()))[0]
        return f"{shown}: changed since the interrupted run (its splits were {', '.join(theirs)}, now {', '.join(ours)})"
    for split, now in ours.items():
        then = theirs.get(split)
        if not isinstance(then, dict):
            continue
        src, classes = where[split]
        if then.get("classes") != now["classes"]:
            what = "its bytes differ" if then.get("classes") and now["classes"] else "another file names the classes now"
            return f"{classes or src}: changed since the interrupted run ({what})"
        if then.get("listing") != now["listing"]:
            return (f"{src}: changed since the interrupted run (split {split}: a file was rewritten, added, removed or renamed — "
                    "its sizes or versions differ)")  # fmt: skip
    return None


def keep_finished(o: Output, earlier: Journal) -> tuple[dict[str, list[ShardEntry]], dict[str, int]]:
    """The finished shards OUT still holds exactly, per split in order up to the first that is
    not (the rest removed), and the splits finished whole (their bad files)."""
    kept: dict[str, list[ShardEntry]] = {}
    closed: dict[str, int] = {}
    for name, entries in earlier.splits.items():
        good = []
        for e in entries:
            if not all(o.holds(f) for f in e.files):
                break
            good.append(e)
        kept[name] = good
        if len(good) < len(entries) or name not in earlier.closed:
            break
        closed[name] = earlier.closed[name]
    o.discard({f.path for entries in kept.values() for e in entries for f in e.files})
    for entries in kept.values():
        for e in entries:
            o.published.update((f.path, f) for f in e.files)
    o.journal.splits = {k: list(v) for k, v in kept.items()}
    o.journal.closed = dict(closed)
    return kept, closed
