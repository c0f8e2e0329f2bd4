"""``ppencrypt inspect``: the manifest, for people."""

from __future__ import annotations

from .formats import Dataset


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def summary(ds: Dataset) -> str:
    m = ds.manifest
    c = m.cipher
    lines = [
        f"dataset   {ds.root}",
        f"made by   {m.tool}, stored as {m.storage}",
        f"method    {c.method}" + (f" {c.params}" if c.params else "") + ("" if c.key_id else " (not encrypted)"),
    ]
    if c.key_id:
        lines += [f"key id    {c.key_id}", f"key scope {c.key_scope}" + (f", salt {c.salt}" if c.salt else "")]
        lines.append("mac       " + ("none (manifest version 1: cannot be authenticated)" if m.mac is None else
                                    "present: `ppencrypt verify OUT --key K` checks it (inspect holds no key)"))  # fmt: skip
    lines += [
        f"images    {m.height}x{m.width}x{m.channels} uint8" + (f" (resized to {m.resize}, {m.resize_rule or 'pillow-bicubic'})" if m.resize else ""),
        f"source    {m.layout}" + (f", {m.skipped} bad files skipped" if m.skipped else ""),
        f"classes   {len(m.classes)}: {', '.join(m.classes[:10])}" + (", ..." if len(m.classes) > 10 else ""),
    ]
    if m.augment is not None:
        a = m.augment
        lines.append(f"augmented {a.copies} copies of {a.split} in the client ({', '.join(a.ops)}, pad {a.pad}, seed {a.seed})")
    for name, s in m.splits.items():
        size = sum(sh.bytes for sh in s.shards)
        lines.append(f"split     {name}: {s.count} samples in {len(s.shards)} shards ({_size(size)}); per class {min(s.per_class)}..{max(s.per_class)}")
    if c.derivations:
        lines.append("derived   " + "\n          ".join(c.derivations))
    return "\n".join(lines) + "\n"
