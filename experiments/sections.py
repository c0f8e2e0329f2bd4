"""The harness's sections of a markdown file (docs/results.md): each between a begin and an
end marker of its own, replaced in place when it is written again; the rest of the file is
kept as it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NEW = "# Accuracy record\n\n"  # a file written for the first time


@dataclass(frozen=True)
class Section:
    name: str  # its markers: <!-- NAME:begin --> and <!-- NAME:end -->
    anchor: str | None = None  # a line a new section goes after (the file's end without it)

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}:begin -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"


def update_doc(path: Path, section: Section, text: str) -> None:
    """Write ``text`` as ``section`` of ``path``: in place of what its markers hold, else after
    its anchor's line, else at the end of the file (one blank line each side)."""
    doc = path.read_text(encoding="utf-8") if path.exists() else NEW
    marked = f"{section.begin}\n{text}{section.end}"
    if section.begin in doc and section.end in doc:
        head, rest = doc.split(section.begin, 1)
        doc = head + marked + rest.split(section.end, 1)[1]
    elif section.anchor is not None and section.anchor in doc:
        head, rest = doc.split(section.anchor, 1)
        doc = f"{head}{section.anchor}\n\n{marked}\n\n{rest.lstrip(chr(10))}"
    else:
        doc = doc.rstrip("\n") + "\n\n" + marked + "\n"
    path.write_text(doc, encoding="utf-8")
