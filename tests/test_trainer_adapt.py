"""pptrain --adapt pixel|invariant|tanaka|none: the default per method, what config.json
records, the refusals, and run directories from before the option."""

import json

import pytest
import torch

from test_trainer_cli import TINY, metrics, run
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def shapes_le(shapes_src, session_key, tmp_path_factory):
    return encrypt(shapes_src, tmp_path_factory.mktemp("le") / "out", session_key, method="le", shard_size=64)


def config(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def le_run(shapes_le, tmp_path_factory):
    """A run on the le dataset with the default adaptation network, stopped after 1 of 2 epochs."""
    r = tmp_path_factory.mktemp("le-run") / "r"
    run(shapes_le, *TINY, "--epochs", 2, "--stop-after", 1, "--augment", "none", "--run-dir", r)
    return r


def test_block_ciphers_default_to_tanaka_and_eval_rebuilds_it(le_run, shapes_le):
    c = config(le_run)
    assert c["settings"]["adapt"] is None  # as asked: the method's default
    assert c["resolved"]["adapt"] == "tanaka"
    assert c["model"]["adapt"] == "tanaka" and c["model"]["adapt_block"] == 4
    weights = torch.load(le_run / "checkpoint.pt", weights_only=True)["model"]
    assert weights["adapt.conv1.weight"].shape == (48, 1, 4, 4) and weights["adapt.conv3.weight"].shape == (512, 48, 1, 1)
    got = json.loads(run("eval", le_run, shapes_le, "--json").stdout)
    assert got["accuracy"] == pytest.approx(metrics(le_run)[-1]["test_acc"])


def test_tanaka_takes_the_block_size_from_the_manifest(shapes_src, session_key, tmp_path):
    le7 = encrypt(shapes_src, tmp_path / "le7", session_key, method="le", params={"block_size": 7}, shard_size=64)
    run(le7, *TINY, "--epochs", 1, "--augment", "none", "--run-dir", tmp_path / "r")
    assert config(tmp_path / "r")["model"]["adapt_block"] == 7
    weights = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["model"]
    assert weights["adapt.conv1.weight"].shape == (48, 1, 7, 7) and weights["adapt.conv3.weight"].shape == (49 * 32, 48, 1, 1)


@pytest.mark.parametrize("args,expected,block", [([], "invariant", None), (["--no-adapt"], "none", None), (["--adapt", "pixel"], "pixel", None),
                                                 (["--adapt", "none"], "none", None), (["--adapt", "tanaka"], "tanaka", 4)])  # fmt: skip
def test_pixel_ciphers_default_to_invariant_and_adapt_overrides(shapes_pe, tmp_path, args, expected, block):
    run(shapes_pe, *TINY, "--epochs", 1, *args, "--run-dir", tmp_path / "r")
    c = config(tmp_path / "r")
    assert c["model"]["adapt"] == c["resolved"]["adapt"] == expected and c["model"]["adapt_block"] == block
    assert c["settings"]["adapt"] == (None if not args else expected)


def test_adapt_refusals_exit_2(shapes_pe, shapes_src, session_key, tmp_path):
    r = run(shapes_pe, *TINY, "--adapt", "block", "--run-dir", tmp_path / "a", code=2)
    assert "Invalid value for '--adapt': 'block' is not one of 'pixel', 'invariant', 'tanaka', 'blockset', 'none'" in r.output
    r = run(shapes_pe, *TINY, "--no-adapt", "--adapt", "tanaka", "--run-dir", tmp_path / "b", code=2)
    assert "Invalid value for '--no-adapt': --no-adapt contradicts --adapt tanaka" in r.output
    odd = encrypt(shapes_src, tmp_path / "odd", session_key, size=30, shard_size=64)
    r = run(odd, *TINY, "--adapt", "tanaka", "--run-dir", tmp_path / "c", code=2)
    assert r.output.endswith(f"Error: Invalid value for '--adapt': {odd}: --adapt tanaka needs image sides divisible by the "
                             "block size 4, these images are 30x30 (use --adapt pixel or none)\n")  # fmt: skip
    assert not (tmp_path / "c").exists()
    assert "done, 1/1 epochs" in run(odd, *TINY, "--epochs", 1, "--run-dir", tmp_path / "d").stdout  # pixel fits any size


def test_resume_refuses_another_adaptation_network(le_run, shapes_le):
    out = run(shapes_le, "--adapt", "pixel", "--resume", "--run-dir", le_run, code=1).output
    assert out == (f"Error: {le_run / 'config.json'}: this run was started with the method's default adaptation network; "
                   "resuming with --adapt pixel would not continue it (start a new --run-dir instead)\n")  # fmt: skip


def test_runs_from_before_adapt_still_evaluate_and_resume(shapes_pe, tmp_path):
    """Those recorded ``adapt: true`` / ``false`` in settings and model."""
    r = tmp_path / "r"
    run(shapes_pe, *TINY, "--epochs", 2, "--stop-after", 1, "--no-adapt", "--run-dir", r)
    c = config(r)
    c["settings"]["adapt"] = c["model"]["adapt"] = False
    del c["model"]["adapt_block"], c["resolved"]["adapt"]
    (r / "config.json").write_text(json.dumps(c))
    got = json.loads(run("eval", r, shapes_pe, "--json").stdout)
    assert got["accuracy"] == pytest.approx(metrics(r)[-1]["test_acc"])
    assert "done, 2/2 epochs" in run(shapes_pe, "--resume", "--quiet", "--run-dir", r).stdout
    assert config(r)["settings"]["adapt"] == "none"
