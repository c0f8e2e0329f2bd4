"""A run directory from the server (docs/security.md, "Hostile run directories"): what `pptrain
eval`, `pptrain predict` and `pptrain --resume` read from it — config.json, checkpoint.pt — is
read as a dataset's files are and checked before anything is built from it. Each test failed
before the defence; the ones that could exhaust memory or hang run pptrain in a process of its
own, under a memory limit and a timeout, so that a regression fails the test instead of the
machine."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from test_trainer_cli import TINY, run
from pptrain.model import PrivacyResNet
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

MEMORY = 6 << 30  # address space of a pptrain process: importing torch alone reserves about 3.5 GiB
TIMEOUT = 240  # seconds: a FIFO blocked for ever before the defence
FILES = ("config.json", "checkpoint.pt", "metrics.jsonl")


@pytest.fixture(scope="module")
def trained(shapes_pe, tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("hostile-run") / "run"
    run(shapes_pe, *TINY, "--epochs", 2, "--stop-after", 1, "--run-dir", r)  # resumable: one epoch of two
    return r


@pytest.fixture(scope="module")
def query(tmp_path_factory) -> Path:
    """A query of the run's shape (28x28, one channel): predict does not ask how it was made."""
    path = tmp_path_factory.mktemp("query") / "q.png"
    Image.new("L", (28, 28), 7).save(path)
    return path


def copy_run(trained: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in FILES:
        shutil.copyfile(trained / name, dest / name)
    return dest


def edit_config(run_dir: Path, change) -> None:
    doc = json.loads((run_dir / "config.json").read_text())
    change(doc)
    (run_dir / "config.json").write_text(json.dumps(doc))


def edit_checkpoint(run_dir: Path, change) -> None:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run_dir / "checkpoint.pt")


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def pptrain_process(*args) -> tuple[int, str]:
    """pptrain in a process of its own, under MEMORY and TIMEOUT: (exit code, stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2", CUDA_VISIBLE_DEVICES="")  # CUDA reserves far more address space
    try:
        done = subprocess.run([sys.executable, "-m", "pptrain", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT,
                              preexec_fn=limited, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"pptrain {args[0]} still running after {TIMEOUT} s")
    return done.returncode, done.stderr


def one_line(code: int, stderr: str) -> str:
    """Exit 1 and a single line on stderr: no traceback, nothing killed."""
    assert code == 1, (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[-2000:]
    return lines[0]


def test_the_run_directory_as_written_is_read(trained, shapes_pe, query):
    """The baseline the attacks below are measured against: in the same limits, the run as pptrain
    wrote it evaluates and predicts."""
    code, err = pptrain_process("predict", trained, query, "--device", "cpu")
    assert code == 0, err[-2000:]
    assert run("eval", trained, shapes_pe).output.startswith(f"{shapes_pe} (test, ")


@pytest.mark.parametrize("command", ["predict", "resume"])
@pytest.mark.parametrize("name", ["config.json", "checkpoint.pt"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_run_file_must_be_a_regular_file(trained, shapes_pe, query, tmp_path, command, name, kind):
    """Before: config.json linked to /dev/zero grew predict to 21.6 GiB (under this test's
    limit: a MemoryError traceback), and as a FIFO it blocked predict and --resume for ever;
    checkpoint.pt was checked with is_file() and then opened again by its path (both were
    reported as "no checkpoint"). Now each file is opened once, with O_NOFOLLOW | O_NONBLOCK, and
    must be a regular file (fstat on the open file), as a dataset's files must."""
    r = copy_run(trained, tmp_path / "r")
    (r / name).unlink()
    if kind == "dev-zero":
        (r / name).symlink_to("/dev/zero")
    else:
        os.mkfifo(r / name)
    args = ("predict", r, query) if command == "predict" else (shapes_pe, "--resume", "--epochs", 2, "--quiet", "--run-dir", r)
    args += ("--device", "cpu")
    line = one_line(*pptrain_process(*args))
    why = "is a symbolic link; refusing to follow it" if kind == "dev-zero" else "is not a regular file"
    assert line == f"Error: {r / name}: {why}"


def test_a_config_json_larger_than_a_run_record_is_not_read(trained, query, tmp_path):
    r = copy_run(trained, tmp_path / "r")
    with open(r / "config.json", "a") as f:
        f.write(" " * (4 << 20))
    line = one_line(*pptrain_process("predict", r, query, "--device", "cpu"))
    assert line.startswith(f"Error: {r / 'config.json'}: ") and "more than the 4194304 a file of this kind may have" in line


def parameters(width: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in PrivacyResNet(1, 3, width=width, adapt="invariant", group="negations").parameters())


@pytest.mark.parametrize("width, claim, expected", [
    (8192, None, "config.json: model: width 8192 is not in 1..1024"),
    (1024, "stale", "config.json: model: {stale} parameters recorded, but the model it describes has {real}"),
    (1024, "real", "checkpoint.pt: does not fit the model (conv1.weight is [4, 32, 3, 3] torch.float32, the model's is "
                   "[1024, 32, 3, 3] torch.float32)"),
])  # fmt: skip
def test_the_model_is_checked_before_it_is_built(trained, query, tmp_path, width, claim, expected):
    """Before: `width: 8192` (or a width within bounds that the checkpoint does not fit) built
    the model first — 11.6 GiB at width 1024, 730 GiB at 8192 — and only then found the
    checkpoint did not fit. Now the width is bounded, the model is built on the meta device, its
    parameter count checked against the record's and the checkpoint's tensors against its
    shapes, and only then is anything allocated."""
    r = copy_run(trained, tmp_path / "r")
    stale = json.loads((r / "config.json").read_text())["model"]["parameters"]
    real = parameters(width)

    def wider(doc):
        doc["model"]["width"] = width
        if claim == "real":
            doc["model"]["parameters"] = real

    edit_config(r, wider)
    line = one_line(*pptrain_process("predict", r, query, "--device", "cpu"))
    assert line == f"Error: {r}/" + expected.format(stale=stale, real=real)


def test_no_run_is_started_that_its_own_reader_would_refuse(shapes_pe, tmp_path):
    r = run(shapes_pe, *TINY, "--width", 2048, "--run-dir", tmp_path / "r", code=2)
    assert "Invalid value for '--width': --width must be at most 1024, not 2048" in r.output and not (tmp_path / "r").exists()


def test_class_names_with_terminal_escapes_are_never_printed(trained, shapes_pe, query, tmp_path):
    """Before: predict printed a class name from config.json as it was, escape sequences and
    all. Now every string of the record is refused if it holds a control character — the check
    the manifest reader makes, reused (ppencrypt.formats.manifest)."""
    r = copy_run(trained, tmp_path / "r")
    edit_config(r, lambda doc: doc["dataset"]["classes"].__setitem__(0, "top\x1b]0;owned\x07\x1b[2J"))
    for result in (run("predict", r, query, code=1), run("eval", r, shapes_pe, code=1)):
        assert result.output == f"Error: {r / 'config.json'}: dataset: 'top\\x1b]0;owned\\x07\\x1b[2J' holds a control character\n"


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["settings"].__setitem__("test_split", "t\x1b[31m"), "settings: 't\\x1b[31m' holds a control character"),
    (lambda d: d.__setitem__("version", "\x1b[2J"), "version '\\x1b[2J', this pptrain reads 1, 2 and 3"),
    (lambda d: d["dataset"].__setitem__("shape", [1 << 20, 28, 1]), "dataset: shape [1048576, 28, 1] is no image shape"),
    (lambda d: d["model"].__setitem__("adapt_group", "rotations"), "model: adapt_group 'rotations' is none of identity, negations"),
    (lambda d: d["settings"].__setitem__("workers", 1 << 20), "settings: workers 1048576 is not in 0..1024"),
    (lambda d: d["settings"].__setitem__("memory_limit", 1 << 70), "settings: a number that is not finite or too large"),
    (lambda d: d["dataset"]["params"].__setitem__("x", [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]), "dataset: nested more than 16 deep"),
    (lambda d: d["runtime"].__setitem__("device_name", "x" * 5000), "runtime: a string of 5000 characters (at most 4096)"),
])  # fmt: skip
def test_every_field_of_the_record_is_bounded(trained, shapes_pe, tmp_path, change, expected):
    """Before: a version or a split name holding an escape sequence was printed as it was; 2**20
    loader workers, 2**70 MiB, an unknown pixel group, nesting 18 deep and 5000-character strings
    were taken as they came (an image shape of 2**20 px was refused only later, by the comparison
    with the dataset's)."""
    r = copy_run(trained, tmp_path / "r")
    edit_config(r, change)
    out = run("eval", r, shapes_pe, code=1).output
    assert out.startswith(f"Error: {r / 'config.json'}: {expected}") and out.count("\n") == 1 and "\x1b" not in out


def test_json_that_python_reads_but_is_not_json_is_refused(trained, shapes_pe, tmp_path):
    """NaN, 1e400 (infinity to Python) and an integer of 5000 digits: json.loads takes the first
    two and raises ValueError (a traceback before) on the third."""
    r = copy_run(trained, tmp_path / "r")
    text = (r / "config.json").read_text()
    for old, new in (('"lr": null', '"lr": NaN'), ('"seed": 0', '"seed": ' + "9" * 5000), ('"pad": 4', '"pad": 1e400')):
        assert old in text
        (r / "config.json").write_text(text.replace(old, new))
        out = run("eval", r, shapes_pe, code=1).output  # strict JSON (ppencrypt.formats.jsonsafe), one line
        assert out.startswith(f"Error: {r / 'config.json'}: not valid JSON (") and out.count("\n") == 1, out


def test_a_compressed_checkpoint_is_refused_before_torch_inflates_it(trained, shapes_pe, tmp_path):
    """torch.load inflates a deflated member whatever its size (a 66 KB file held 64 MiB of
    zeros): a zip bomb. torch.save stores members as they are, so a compressed one is refused."""
    r = copy_run(trained, tmp_path / "r")
    with zipfile.ZipFile(trained / "checkpoint.pt") as src, zipfile.ZipFile(r / "checkpoint.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.infolist():
            dst.writestr(member.filename, src.read(member))
    out = run("eval", r, shapes_pe, code=1).output
    assert out.startswith(f"Error: {r / 'checkpoint.pt'}: a compressed member") and out.count("\n") == 1


def test_a_checkpoint_larger_than_its_model_needs_is_not_read(trained, shapes_pe, tmp_path):
    """Before: a checkpoint was read whole, whatever it held besides the model."""
    r = copy_run(trained, tmp_path / "r")
    edit_checkpoint(r, lambda state: state.__setitem__("ballast", torch.zeros(5 << 20)))  # 20 MiB for a model of 0.1 MiB
    out = run("eval", r, shapes_pe, code=1).output
    assert out.startswith(f"Error: {r / 'checkpoint.pt'}: ") and "a checkpoint of the run's model may have" in out


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["optimizer"]["state"][0].__setitem__("momentum_buffer", torch.zeros(3)), "the optimiser's state does not fit the model"),
    (lambda s: s["history"][0].__setitem__("train_acc", "high"), "the history is not one record of the metrics per epoch"),
    (lambda s: s["history"][0].update({"\x1b[2J_acc": s["history"][0].pop("test_acc"), "\x1b[2J_loss": s["history"][0].pop("test_loss")}),
     "the history is not one record of the metrics per epoch"),
    (lambda s: s.__setitem__("epoch", -1), "epoch -1 is not in 0..1048576"),
    (lambda s: s["model"].__setitem__("fc.bias", torch.zeros(4)), "does not fit the model (fc.bias is [4] torch.float32, the model's is [3] torch.float32)"),
])  # fmt: skip
def test_what_a_resume_takes_from_the_checkpoint_is_checked(trained, shapes_pe, tmp_path, change, expected):
    """Before: a momentum buffer of another shape and a negative epoch count ended in a
    traceback, a history entry the trainer did not write went into metrics.jsonl, and a tensor of
    another shape was refused by load_state_dict only once the model was built (now it is
    refused before)."""
    r = copy_run(trained, tmp_path / "r")
    edit_checkpoint(r, change)
    out = run(shapes_pe, "--resume", "--epochs", 2, "--quiet", "--run-dir", r, code=1).output
    assert out == f"Error: {r / 'checkpoint.pt'}: {expected}\n"


def test_an_untouched_run_still_resumes(trained, shapes_pe, tmp_path):
    r = copy_run(trained, tmp_path / "r")
    assert run(shapes_pe, "--resume", "--epochs", 2, "--quiet", "--run-dir", r).stdout.startswith(f"{r}: done, 2/2 epochs")
    assert len(io.StringIO((r / "metrics.jsonl").read_text()).readlines()) == 2


def plant(at: Path, victim: Path, link: str) -> None:
    if link == "symbolic":
        at.symlink_to(victim)
    else:
        os.link(victim, at)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_trace_is_never_written_through_a_link_planted_in_the_run_directory(trained, shapes_pe, tmp_path, link):
    """Before: --trace truncated (a new run) and appended to (a resumed one) trace-rank0.jsonl by
    its path, so a link the server planted there in the run directory had pptrain write into the
    file it named. Now a new trace replaces whatever is there (atomically), and a resumed one is
    opened with O_NOFOLLOW and must be a regular file with no other name, or the run stops at
    once with one line naming it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("a file of the user's\n")
    r = copy_run(trained, tmp_path / "r")
    plant(r / "trace-rank0.jsonl", victim, link)
    out = run(shapes_pe, "--resume", "--epochs", 2, "--trace", "--quiet", "--run-dir", r, code=1).output
    why = "is a symbolic link; refusing to follow it" if link == "symbolic" else "has another name (a hard link); refusing to write through it"
    assert out == f"Error: {r / 'trace-rank0.jsonl'}: {why}\n"
    assert victim.read_text() == "a file of the user's\n"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    plant(fresh / "trace-rank0.jsonl", victim, link)
    run(shapes_pe, *TINY, "--epochs", 1, "--trace", "--run-dir", fresh)
    assert victim.read_text() == "a file of the user's\n"
    trace = fresh / "trace-rank0.jsonl"
    assert not trace.is_symlink() and trace.stat().st_nlink == 1
    (line,) = trace.read_text().splitlines()
    assert json.loads(line)["epoch"] == 1
