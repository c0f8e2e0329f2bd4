"""JSON the server wrote (docs/security.md, "JSON edge cases"): a number beyond a float's range
(``1e400``, which Python's json turns into inf), ``NaN``, a lone surrogate (``"\\ud800"``, a str
that cannot become UTF-8) and nesting ~985 deep each parsed, then crashed a later step with a
traceback — the manifest's canonical form (ValueError, UnicodeEncodeError, RecursionError), in
verify, inspect and pptrain alike. Each is now refused while parsing, by the one parser of
untrusted JSON (ppencrypt/formats/jsonsafe.py), in one line naming the file, exit 1: in
manifest.json, in zarr.json and in pptrain's config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ppencrypt, ppencrypt_process
from ppencrypt.errors import ManifestError
from ppencrypt.formats.jsonsafe import MAX_DEPTH, depth, load_json
from test_hostile import one_line_error, restamp
from test_trainer_cli import TINY, run
from trainer_fixtures import TRAIN, encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

# What the server appends to an object, as raw JSON text: json.dumps cannot write some of them.
EDGES = {
    "huge-number": "1e400",
    "nan": "NaN",
    "infinity": "-Infinity",
    "lone-surrogate": '"\\ud800"',
    "surrogate-key": '{"\\udfff": 1}',
    "deep": "[" * 985 + "]" * 985,
}
WHY = {
    "huge-number": "the number 1e400 is beyond a float's range",
    "nan": "NaN is not a JSON number",
    "infinity": "-Infinity is not a JSON number",
    "lone-surrogate": "a lone surrogate escape in a string",
    "surrogate-key": "a lone surrogate escape in a string",
    "deep": f"nested 986 levels deep, more than {MAX_DEPTH}",  # 985 inside the object
}


def with_extra(text: str, raw: str) -> str:
    """A JSON object's text with one more field, ``"extra": <raw>``."""
    body = text.rstrip()
    assert body.endswith("}")
    return f'{body[:-1]}, "extra": {raw}}}'


@pytest.fixture
def copy(shapes_pe, tmp_path) -> Path:
    return Path(shutil.copytree(shapes_pe, tmp_path / "data"))


@pytest.mark.parametrize("edge", EDGES)
def test_json_edge_cases_in_a_manifest_are_one_line_errors(copy, tmp_path, session_key, edge):
    manifest = copy / "manifest.json"
    manifest.write_text(with_extra(manifest.read_text(), EDGES[edge]))
    expected = f"Error: {manifest}: not valid JSON ({WHY[edge]}"
    results = {
        "verify": ppencrypt("verify", copy, "-q"),
        "verify --key": ppencrypt("verify", copy, "-q", "--key", session_key),
        "inspect": ppencrypt("inspect", copy),
        "pptrain": run(copy, *TRAIN, "--run-dir", tmp_path / "run", code=1),
    }
    for command, r in results.items():
        assert one_line_error(r).startswith(expected), (command, r.output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("levels", [100, 980])
def test_nesting_is_capped_before_python_recursion_decides(copy, levels):
    """As its own process (pytest's stack is deeper): 980 levels parsed, then the encoder of the
    canonical form raised RecursionError (a traceback from verify), and 100 were accepted. The
    cap is the parser's own now, whatever the stack."""
    manifest = copy / "manifest.json"
    manifest.write_text(with_extra(manifest.read_text(), "[" * levels + "]" * levels))
    p = ppencrypt_process("verify", copy, "-q")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "Traceback" not in err, err
    assert err == f"Error: {manifest}: not valid JSON (nested {levels + 1} levels deep, more than {MAX_DEPTH})\n"


@pytest.mark.parametrize("edge", ["huge-number", "lone-surrogate", "deep"])
def test_json_edge_cases_in_zarr_metadata_are_one_line_errors(shapes_src, session_key, tmp_path, edge):
    out = encrypt(shapes_src, tmp_path / "zarr", session_key, shard_size=32, storage="zarr")
    meta = out / "train" / "images" / "zarr.json"
    meta.write_text(with_extra(meta.read_text(), EDGES[edge]))
    restamp(out, "train/images/zarr.json")  # the server writes the manifest too
    expected = f"Error: {meta}: not valid JSON ({WHY[edge]}"
    for r in (ppencrypt("verify", out, "-q"), run(out, *TRAIN, "--run-dir", tmp_path / "run", code=1)):
        assert one_line_error(r).startswith(expected), r.output


@pytest.fixture(scope="module")
def one_run(shapes_pe, tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("json-run") / "r"
    run(shapes_pe, *TINY, "--epochs", 1, "--device", "cpu", "--run-dir", r)
    return r


@pytest.mark.parametrize("edge", EDGES)
def test_json_edge_cases_in_a_run_record_are_one_line_errors(one_run, shapes_pe, tmp_path, edge):
    damaged = Path(shutil.copytree(one_run, tmp_path / "damaged"))
    config = damaged / "config.json"
    config.write_text(with_extra(config.read_text(), EDGES[edge]))
    expected = f"Error: {config}: not valid JSON ({WHY[edge]}"
    for r in (run("eval", damaged, shapes_pe, code=1), run(shapes_pe, *TINY, "--resume", "--run-dir", damaged, code=1)):
        assert one_line_error(r).startswith(expected), r.output


def test_the_depth_scan_counts_brackets_outside_strings_only():
    assert depth('{"a": [1, {"b": "[[[[{{{{"}], "c\\"[[": "\\\\"}') == 3
    assert depth('"[[[[" ' + "[" * 5) == 5  # unbalanced: the parser says what is wrong
    nested = lambda n: "[" * n + "]" * n  # noqa: E731
    assert load_json(nested(MAX_DEPTH), "f", ManifestError) is not None
    with pytest.raises(ManifestError, match=f"^f: not valid JSON \\(nested {MAX_DEPTH + 1} levels deep"):
        load_json(nested(MAX_DEPTH + 1), "f", ManifestError)
    assert load_json('{"name": "[' + "[" * 100 + '", "pair": "\\ud83d\\ude00"}', "f", ManifestError)["pair"] == "\U0001f600"
    assert load_json("[1e308, -1e-400, 1.5]", "f", ManifestError) == [1e308, -0.0, 1.5]


def test_a_manifest_with_an_edge_case_is_not_a_dataset_to_replace(copy):
    """--overwrite's check (is_dataset) reads through the same parser: a manifest it cannot
    read is not a dataset, and nothing crashes."""
    from ppencrypt.formats import is_dataset

    manifest = copy / "manifest.json"
    assert is_dataset(copy)
    manifest.write_text(with_extra(json.dumps(json.loads(manifest.read_text())), EDGES["deep"]))
    assert not is_dataset(copy)
