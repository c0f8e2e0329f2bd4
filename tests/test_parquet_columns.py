"""How a parquet source finds its image and label columns (sources/parquet.find_columns): from
the schema when one column fits, else the one --image-column / --label-column names, and each
refusal as one line naming the file. The schemas are those of real tables: pyarrow's, holding
PNGs of the vendored CIFAR-10 images."""

import pytest

from ppencrypt.errors import SourceError
from ppencrypt.sources.parquet import find_columns
from streamed_fixtures import encode

pa = pytest.importorskip("pyarrow")

SHOWN = "data/train.parquet"


def schema(cifar10, **columns):
    """A table of three CIFAR-10 images with the given columns, each named by its kind:
    "struct" (Hugging Face's image: bytes and path), "binary", "int" or "str"."""
    images, labels = cifar10
    pngs = [encode(im) for im in images[:3]]
    values = {
        "struct": [{"bytes": b, "path": None} for b in pngs],
        "binary": pngs,
        "int": [int(x) for x in labels[:3]],
        "str": [str(int(x)) for x in labels[:3]],
    }
    return pa.table({name: values[kind] for name, kind in columns.items()}).schema


@pytest.mark.parametrize("columns, image, label, found", [
    (dict(image="struct", label="int"), None, None, ("image", "label", "int")),
    (dict(img="binary", target="str", n="int"), None, None, ("img", "target", "str")),  # a usual label name first
    (dict(pic="struct", raw="binary", y="int"), None, None, ("pic", "y", "int")),  # a struct before plain binary
    (dict(a="binary", b="binary", y="int"), "b", None, ("b", "y", "int")),
    (dict(image="struct", p="int", q="str"), None, "q", ("image", "q", "str")),
])  # fmt: skip
def test_the_columns_are_found_or_named(cifar10, columns, image, label, found):
    c = find_columns(schema(cifar10, **columns), SHOWN, image, label)
    assert (c.image, c.label, c.kind) == found


@pytest.mark.parametrize("columns, image, label, message", [
    (dict(n="int", s="str"), None, None, "no image column (a struct with binary 'bytes', or a binary column)"),
    (dict(a="binary", b="binary", y="int"), None, None, "several image columns (a, b): pass --image-column"),
    (dict(image="struct", y="int"), "photo", None, "no column 'photo' (--image-column; it has image, y)"),
    (dict(image="struct"), None, None, "no label column (an integer or string column)"),
    (dict(image="struct", p="int", q="str"), None, None, "several label columns (p, q): pass --label-column"),
    (dict(image="struct", y="int"), None, "label", "no column 'label' (--label-column; it has image, y)"),
    (dict(image="struct", raw="binary"), None, "raw", "column 'raw' holds binary, not integer or string labels"),
    (dict(image="binary", y="int"), None, "image", "column 'image' holds binary, not integer or string labels"),
    (dict(image="binary", y="int"), "y", "y", "the image and the label cannot be one column ('y')"),
])  # fmt: skip
def test_a_missing_or_ambiguous_column_is_one_line_naming_the_file(cifar10, columns, image, label, message):
    with pytest.raises(SourceError) as e:
        find_columns(schema(cifar10, **columns), SHOWN, image, label)
    assert str(e.value).startswith(f"{SHOWN}: {message}")
