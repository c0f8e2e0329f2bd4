"""Parquet files as a source: ``*.parquet`` in a folder or under a URL prefix, as Hugging Face
``datasets`` writes them (the image a struct with ``bytes`` and ``path``) or with the image as
plain binary; the label an integer or a string column.

The columns are found from the schema when that is unambiguous — the image: the one struct
with a binary ``bytes`` field, else the one binary column; the label: a Hugging Face
``ClassLabel`` feature (its names are the class names), else a column named ``label``,
``labels``, ``cls``, ``class`` or ``target``, else the one integer or string column — or
named with ``--image-column`` / ``--label-column``. Class names: ``--classes FILE``, else the
ClassLabel's, else a ``classes.txt`` beside the files, else the distinct string labels
sorted, or the label numbers 0..max. Reading is by row group (pyarrow), ROWS rows a task,
never a whole file; the files' footers and label columns are read first (the count and the
classes), never their images. Order: files in sorted order, rows in file order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import MissingExtraError, SourceError
from .base import Chunk
from .fingerprint import place_listing
from .place import Place
from .streamed import Labels, Spec, chunk_of, decoded_or_bad, first_spec

ROWS = 1024  # rows a task decodes at most
MAX_GROUP = 1 << 30  # bytes of a row group (as its footer says): a task reads a whole one
LABEL_NAMES = ("label", "labels", "cls", "class", "target")


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("parquet sources need pyarrow: pip install pyarrow") from None
    return pq


def _open(place: Place, rel: str):
    pq = _pq()
    f = place.open(rel)
    try:
        return pq.ParquetFile(f), f
    except Exception as e:  # pyarrow's ArrowInvalid, OSError: not parquet, or damaged
        f.close()
        raise SourceError(f"{place.shown(rel)}: not a parquet file, or a damaged one ({' '.join(str(e).split())[:160]})") from None


def _is_binary(t) -> bool:
    import pyarrow as pa

    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _image_columns(schema) -> list[str]:
    import pyarrow as pa

    structs = [f.name for f in schema if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0
               and _is_binary(f.type.field("bytes").type)]  # fmt: skip
    return structs or [f.name for f in schema if _is_binary(f.type)]


def _label_kind(t) -> str | None:
    import pyarrow as pa

    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_dictionary(t):
        return _label_kind(t.value_type)
    return None


def _hf_class_labels(schema) -> dict[str, list[str]]:
    """{column: names} of the Hugging Face ClassLabel features the schema's metadata records."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    try:
        features = json.loads(meta).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    out = {}
    for name, f in features.items() if isinstance(features, dict) else ():
        if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list):
            out[name] = [str(n) for n in f["names"]]
    return out


@dataclass(kw_only=True)
class Columns:
    image: str
    label: str
    kind: str  # int | str
    names: list[str] | None  # a ClassLabel's


def find_columns(schema, shown: str, image: str | None, label: str | None) -> Columns:
    names = [f.name for f in schema]
    image = _column(image, _image_columns(schema), "image", "a struct with binary 'bytes', or a binary column", names, shown)
    class_labels = _hf_class_labels(schema)
    candidates = [n for n in class_labels if n in names] or [n for n in LABEL_NAMES if n in names] \
        or [f.name for f in schema if f.name != image and _label_kind(f.type)]  # fmt: skip
    label = _column(label, candidates, "label", "an integer or string column", names, shown)
    kind = _label_kind(schema.field(label).type)
    if kind is None:
        raise SourceError(f"{shown}: column {label!r} holds {schema.field(label).type}, not integer or string labels")
    if label == image:
        raise SourceError(f"{shown}: the image and the label cannot be one column ({label!r})")
    return Columns(image=image, label=label, kind=kind, names=class_labels.get(label))


def _column(given: str | None, found: list[str], what: str, looked_for: str, names: list[str], shown: str) -> str:
    """The ``what`` column: the one named by --<what>-column, which must be there, else the one
    column ``found`` from the schema (``looked_for`` says what was looked for)."""
    option = f"--{what}-column"
    if given is not None:
        if given not in names:
            raise SourceError(f"{shown}: no column {given!r} ({option}; it has {', '.join(names)})")
        return given
    if len(found) != 1:
        why = f"no {what} column ({looked_for})" if not found else f"several {what} columns ({', '.join(found)}): pass {option}"
        raise SourceError(f"{shown}: {why}")
    return found[0]


def image_bytes(value, name: str) -> bytes:
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        raise SourceError(f"{name}: no image bytes (an image stored only as a path is not read)")
    return value


@dataclass
class ParquetTask:
    place: Place
    file: str
    group: int  # row group
    start: int  # rows of the group, [start, stop)
    stop: int
    first_row: int  # of the group in the file: how messages number rows
    columns: Columns
    spec: Spec
    labels: Labels
    skip_bad: bool

    def describe(self) -> str:
        a = self.first_row + self.start
        return f"{self.place.shown(self.file)} rows {a}-{a + self.stop - self.start - 1}"

    def run(self) -> Chunk:
        pf, f = _open(self.place, self.file)
        with f:
            batches = pf.iter_batches(batch_size=ROWS, row_groups=[self.group], columns=[self.columns.image, self.columns.label])
            for k, batch in enumerate(batches):
                if k * ROWS == self.start:
                    break
            else:
                raise SourceError(f"{self.describe()}: fewer rows than its footer says")
        images, labels, bad = [], [], []
        shown = self.place.shown(self.file)
        cells = batch.column(0).to_pylist()
        values = batch.column(1).to_pylist()
        for i, (cell, value) in enumerate(zip(cells, values)):
            name = f"{shown}:row {self.first_row + self.start + i}"
            if value is None:
                raise SourceError(f"{name}: no label (column {self.columns.label!r} is null)")
            label = self.labels(value, name)
            image = decoded_or_bad(image_bytes(cell, name), name, self.spec, self.skip_bad, bad)
            if image is not None:
                images.append(image)
                labels.append(label)
        return chunk_of(images, labels, bad, self.spec.channels)


@dataclass
class ParquetLoader:
    place: Place
    files: list[str]
    groups: list[list[int]]  # per file, the rows of each row group
    columns: Columns
    spec: Spec
    labels: Labels
    skip_bad: bool
    parallel = True

    @property
    def count(self) -> int:
        return sum(sum(g) for g in self.groups)

    @property
    def inputs(self) -> list[str]:
        return self.files

    def listing(self):
        return place_listing(self.place, self.files)

    def tasks(self):
        for rel, rows in zip(self.files, self.groups):
            first = 0
            for g, n in enumerate(rows):
                for a in range(0, n, ROWS):
                    yield ParquetTask(self.place, rel, g, a, min(n, a + ROWS), first, self.columns, self.spec, self.labels, self.skip_bad)
                first += n


@dataclass(kw_only=True)
class Scanned:
    """What the footers and label columns of a split's files say."""

    groups: list[list[int]]
    columns: Columns
    label_values: set  # distinct labels (no ClassLabel names: to name the classes)


def scan(place: Place, files: list[str], image: str | None, label: str | None) -> Scanned:
    groups, columns, values = [], None, set()
    for rel in files:
        pf, f = _open(place, rel)
        with f:
            schema = pf.schema_arrow
            cols = find_columns(schema, place.shown(rel), image, label)
            if columns is not None and (cols.image, cols.label, cols.kind) != (columns.image, columns.label, columns.kind):
                raise SourceError(f"{place.shown(rel)}: its columns differ from {place.shown(files[0])}'s")
            columns = columns or cols
            md = pf.metadata
            for g in range(md.num_row_groups):
                if md.row_group(g).total_byte_size > MAX_GROUP:
                    raise SourceError(f"{place.shown(rel)}: row group {g} is {md.row_group(g).total_byte_size} bytes, more than the "
                                      f"{MAX_GROUP} a task reads at once; rewrite it with smaller row groups")  # fmt: skip
            groups.append([md.row_group(g).num_rows for g in range(md.num_row_groups)])
            if cols.names is None:
                for g in range(md.num_row_groups):
                    column = pf.read_row_group(g, columns=[cols.label]).column(0)
                    values.update(v for v in column.unique().to_pylist() if v is not None)
    return Scanned(groups=groups, columns=columns, label_values=values)


def probe(place: Place, files: list[str], columns: Columns, size: int | None, skip_bad: bool) -> Spec:
    from ..errors import BadImageError

    for rel in files:
        pf, f = _open(place, rel)
        with f:
            row = 0
            for batch in pf.iter_batches(batch_size=64, columns=[columns.image]):
                for cell in batch.column(0).to_pylist():
                    name = f"{place.shown(rel)}:row {row}"
                    row += 1
                    try:
                        return first_spec(image_bytes(cell, name), name, size)
                    except BadImageError:
                        if not skip_bad:
                            raise
    raise SourceError(f"{place.shown()}: its parquet files hold no rows")


def numbered(values: set, shown: str) -> list[str]:
    """Class names for labels without names: the label numbers 0..max, or the strings sorted."""
    if all(isinstance(v, (int, np.integer)) for v in values):
        if any(v < 0 for v in values):
            raise SourceError(f"{shown}: negative labels")
        return [str(i) for i in range(max(values) + 1)] if values else []
    return sorted(str(v) for v in values)
