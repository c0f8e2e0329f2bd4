"""The manners of a tool people leave running (issue 24): what a run says up front and while it
runs, the defaults in --help and README.md, --overwrite and the first-epoch leftovers, and
metrics, summaries and curves named after the split actually evaluated."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import torch

from conftest import write_imagefolder
from experiments.measurements import Measurement
from ppencrypt.ciphers import cipher_class, method_names
from ppencrypt.formats import open_dataset
from pptrain.cli import cli as pptrain
from pptrain.metrics import curves_figure, evaluated
from pptrain.progress import WIDTH_EXPONENT, duration, quicker
from pptrain.settings import ADAPT_CHOICES, ADAPT_DEFAULTS
from pptrain.train import curves_title, default_adaptation
from trainer_fixtures import encrypt, metrics, run, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--width", "4", "--device", "cpu"]


def drawn(fig) -> dict:
    """What curves.png shows, read back from the figure: per axes its labels, tick labels,
    limits and legend, and the title."""
    fig.canvas.draw()
    axes = []
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if low <= v <= high]
        legend = ax.get_legend()
        axes.append({"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "xticks": ticks, "ylim": ax.get_ylim(),
                     "legend": [t.get_text() for t in legend.get_texts()] if legend else []})  # fmt: skip
    return {"title": fig._suptitle.get_text(), "axes": axes}


@pytest.fixture(scope="module")
def val_data(tmp_path_factory, fmnist, session_key):
    """Photo folders as many come: train/ and valid/, no test/."""
    root = tmp_path_factory.mktemp("val")
    src = write_imagefolder(root / "src", *fmnist, splits={"train": 14, "valid": 6})
    return encrypt(src, root / "data", session_key)


# -- names after the split evaluated ---------------------------------------------------------


def test_a_val_split_is_named_val_in_metrics_summary_and_curves_and_old_runs_still_resume(val_data, tmp_path):
    r = tmp_path / "r"
    out = run(val_data, *TINY, "--batch-size", 7, "--epochs", 2, "--stop-after", 1, "--run-dir", r)
    (rec,) = metrics(r)
    assert list(rec) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "seconds"]
    assert "test_acc" not in rec and 0 <= rec["val_acc"] <= 1
    assert out.stdout.startswith(f"{r}: stopped after epoch 1 (resume with --resume), 1/2 epochs, val acc {100 * rec['val_acc']:.2f}% ")
    assert re.search(rf"^epoch 1/2 .* val loss {rec['val_loss']:.4f} acc +{100 * rec['val_acc']:.2f}% ", out.stderr, re.M)
    assert "test acc" not in out.stdout and "test loss" not in out.stderr
    one = drawn(curves_figure(metrics(r), "t"))
    assert [a["legend"] for a in one["axes"]] == [["train", "val"], ["train", "val"]]
    assert json.loads(run("eval", r, val_data, "--json").stdout)["split"] == "val"

    # A run directory from before the names followed the split: test_* in checkpoint and metrics.
    state = torch.load(r / "checkpoint.pt", weights_only=True)
    state["history"] = [{("test" + k[3:] if k.startswith("val_") else k): v for k, v in h.items()} for h in state["history"]]
    torch.save(state, r / "checkpoint.pt")
    old_rows = [json.loads(line.replace('"val_', '"test_')) for line in (r / "metrics.jsonl").read_text().splitlines()]
    (r / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in old_rows))
    assert Measurement.from_metrics("c", "cmd", old_rows).test_acc == (rec["val_acc"],)  # experiments/ reads both
    out = run(val_data, "--resume", "--run-dir", r)
    history = metrics(r)
    assert [sorted(k for k in h if "_" in k and k.split("_")[0] in ("val", "test")) for h in history] == [["val_acc", "val_loss"]] * 2
    assert history[0]["val_acc"] == rec["val_acc"] and evaluated(history[1]) == (history[1]["val_loss"], history[1]["val_acc"])
    assert Measurement.from_metrics("c", "cmd", history).test_acc == (history[0]["val_acc"], history[1]["val_acc"])
    assert out.stdout.startswith(f"{r}: done, 2/2 epochs, val acc {100 * history[1]['val_acc']:.2f}% ")
    two = drawn(curves_figure(history, "t"))
    assert [a["xticks"] for a in two["axes"]] == [["1", "2"], ["1", "2"]]


# -- curves.png ------------------------------------------------------------------------------


def test_curves_have_whole_epochs_percent_a_title_and_room_around_one_epoch(shapes_pe, tmp_path):
    r = tmp_path / "r"
    run(shapes_pe, *TINY, "--batch-size", 57, "--epochs", 1, "--run-dir", r, "--quiet")
    history = metrics(r)
    assert (r / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((r / "config.json").read_text())
    title = curves_title(str(shapes_pe), open_dataset(shapes_pe).manifest, config["model"]["width"], config["model"]["adapt"])
    assert title == "out: pe, dataset key scope; ResNet-18 width 4, invariant adaptation"
    assert curves_title(str(shapes_pe), open_dataset(shapes_pe).manifest, 64, "invariant", "resnet50").endswith("; resnet50, invariant adaptation")
    one = drawn(curves_figure(history, title))
    assert one["title"] == title
    loss, acc = one["axes"]
    assert (loss["xlabel"], loss["ylabel"], acc["xlabel"], acc["ylabel"]) == ("epoch", "loss", "epoch", "accuracy (%)")
    assert loss["xticks"] == acc["xticks"] == ["1"]  # one tick, not 0.96 ... 1.04
    low, high = acc["ylim"]
    percents = [100 * history[0]["train_acc"], 100 * history[0]["test_acc"]]
    assert high == 100 and low <= min(percents) - 1 and low % 10 == 0 and min(percents) - low <= 11
    assert loss["ylim"][0] == 0 and loss["ylim"][1] >= max(history[0]["train_loss"], history[0]["test_loss"])
    # Three epochs: whole-epoch ticks (matplotlib's default put ticks at 1.25, 1.75, ...).
    three = [dict(history[0], epoch=e) for e in (1, 2, 3)]
    assert [a["xticks"] for a in drawn(curves_figure(three, title))["axes"]] == [["1", "2", "3"]] * 2


# -- --overwrite and the leftovers of a first epoch -------------------------------------------


def test_a_run_directory_is_replaced_only_with_overwrite_and_only_if_it_holds_a_run(shapes_pe, tmp_path):
    r = tmp_path / "r"
    first = ["--batch-size", 57, "--epochs", 2, "--stop-after", 1, "--quiet", "--run-dir", r]
    run(shapes_pe, *TINY, *first)
    assert run(shapes_pe, *TINY, *first, code=1).output == (
        f"Error: {r}: already holds a run; pass --resume to continue it, --overwrite to start it afresh, or choose another --run-dir\n")
    r2 = run(shapes_pe, *TINY, *first, "--resume", "--overwrite", code=2)
    assert "Error: Invalid value for '--overwrite': --overwrite starts the run afresh, --resume continues it: pass one of them" in r2.output
    (r / "notes.txt").write_text("mine")
    assert run(shapes_pe, *TINY, *first, "--overwrite", code=1).output == (
        f"Error: {r}: holds 'notes.txt', which pptrain did not write; --overwrite replaces only a directory that holds a "
        "pptrain run and nothing else (or is empty)\n")  # fmt: skip
    assert (r / "notes.txt").read_text() == "mine" and (r / "checkpoint.pt").exists()
    (r / "notes.txt").unlink()
    run(shapes_pe, *TINY, "--batch-size", 57, "--epochs", 1, "--seed", 1, "--quiet", "--run-dir", r, "--overwrite")
    config = json.loads((r / "config.json").read_text())
    assert (config["settings"]["epochs"], config["settings"]["seed"]) == (1, 1) and [h["epoch"] for h in metrics(r)] == [1]
    assert sorted(p.name for p in r.iterdir()) == ["checkpoint.pt", "config.json", "curves.png", "metrics.jsonl"]

    other = tmp_path / "other"  # someone else's directory with a config.json: never written into
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["BertModel"]}')
    for extra in ([], ["--overwrite"]):
        r3 = run(shapes_pe, *TINY, *first[:-1], other, *extra, code=1)
        assert r3.output == f"Error: {other}: holds a config.json or checkpoint.pt that is not a pptrain run's; choose another --run-dir\n"
    assert [p.name for p in other.iterdir()] == ["config.json"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data.csv").write_text("1,2\n")
    r4 = run(shapes_pe, *TINY, *first[:-1], plain, "--overwrite", code=1)
    assert r4.output.startswith(f"Error: {plain}: holds 'data.csv', which pptrain did not write; --overwrite replaces only")
    empty = tmp_path / "empty"
    empty.mkdir()
    run(shapes_pe, *TINY, "--batch-size", 57, "--epochs", 1, "--quiet", "--run-dir", empty, "--overwrite")
    assert (empty / "checkpoint.pt").exists()


def test_a_run_interrupted_in_its_first_epoch_is_started_afresh_and_resume_says_so(shapes_pe, tmp_path):
    r = tmp_path / "r"
    args = [str(shapes_pe), *TINY, "--batch-size", "16", "--epochs", "1000", "--run-dir", str(r), "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "pipeline"), str(ROOT / "trainer"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "pptrain", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (r / "config.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)  # as the OOM killer or a scheduler's hard limit would
        proc.wait()
    assert (r / "config.json").exists() and not (r / "checkpoint.pt").exists()
    out = run(shapes_pe, *TINY, "--batch-size", 16, "--resume", "--run-dir", r, code=1)
    assert out.output == (f"Error: {r}: no checkpoint.pt to resume from (the run stopped before its first epoch ended); "
                          "run the same command without --resume to start it afresh\n")  # fmt: skip
    out = run(shapes_pe, *TINY, "--batch-size", 57, "--epochs", 1, "--run-dir", r)
    assert out.stderr.startswith(f"{r}: its run never finished an epoch (no checkpoint.pt); starting it afresh\n")
    assert [h["epoch"] for h in metrics(r)] == [1] and json.loads((r / "config.json").read_text())["settings"]["epochs"] == 1


# -- what a run says ---------------------------------------------------------------------------

PLAN = re.compile(r"^cpu \(\d+ threads?\); ResNet-18 at width 4 \(cifar stem\) behind the invariant adaptation network, "
                  r"(\d+\.\d\d) M parameters; 1 epoch of 3 steps of 38 images$", re.M)  # fmt: skip
ESTIMATE = re.compile(r"^estimated (\d+ s|\d+ min \d+ s) per epoch \([\d.e+-]+ s per step, from (\d) steps?\), "
                      r"(\d+ s|\d+ min \d+ s) for the run \(1 epoch\)$", re.M)  # fmt: skip
LINE = re.compile(r"^epoch 1/1: step (\d)/3 \((\d+)%\), \d+ img/s, loss (\d+\.\d{4}), ETA (?:\d+ min )?\d+ s for the epoch, .* for the run$", re.M)


def test_the_device_model_size_estimate_and_progress_lines_are_said(shapes_pe, tmp_path):
    out = run(shapes_pe, *TINY, "--batch-size", 38, "--epochs", 1, "--progress-every", 0.001, "--run-dir", tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    plan = PLAN.search(out.stderr)
    assert plan and plan.group(1) == f"{config['model']['parameters'] / 1e6:.2f}"
    assert out.stderr.index(plan.group(0)) == 0  # before any step
    estimate = ESTIMATE.search(out.stderr)
    assert estimate and 1 <= int(estimate.group(2)) <= 3
    steps = LINE.findall(out.stderr)  # stderr is no terminal here: a line per interval, not a bar
    assert [int(s[0]) for s in steps] == [1, 2, 3] and [int(s[1]) for s in steps] == [33, 66, 100]
    assert "warning" not in out.stderr  # seconds, not hours
    assert "\r" not in out.stderr
    quiet = run(shapes_pe, *TINY, "--batch-size", 38, "--epochs", 1, "--progress-every", 0.001, "--quiet", "--run-dir", tmp_path / "q")
    assert quiet.stderr == ""
    default = run(shapes_pe, *TINY, "--batch-size", 38, "--epochs", 1, "--run-dir", tmp_path / "d")
    assert PLAN.search(default.stderr) and ESTIMATE.search(default.stderr) and not LINE.search(default.stderr)  # 60 s apart


def test_on_a_terminal_a_progress_bar_replaces_the_lines(shapes_pe, tmp_path):
    """stderr a terminal (a pseudo-terminal here): tqdm's bar, redrawn in place, and no progress lines."""
    import fcntl
    import pty
    import struct
    import termios

    main, other = pty.openpty()
    fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a fresh pty is 0 columns wide: no bar fits
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "pipeline"), str(ROOT / "trainer"), os.environ.get("PYTHONPATH", "")]))
    args = [str(shapes_pe), *TINY, "--batch-size", "38", "--epochs", "1", "--progress-every", "0.001", "--run-dir", str(tmp_path / "r")]
    proc = subprocess.Popen([sys.executable, "-m", "pptrain", *args], env=env, stdout=subprocess.DEVNULL, stderr=other)
    os.close(other)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other end closed: the process is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=300) == 0
    text = seen.decode().replace("\r\n", "\n")  # the terminal's line ends
    shown = re.sub(r"[^\n]*\r", "", text)  # what stays on the screen: each line after its last carriage return
    assert PLAN.search(shown) and ESTIMATE.search(shown) and not LINE.search(text)
    bars = re.findall(r"\repoch 1/1: +(\d+)%\|[^\r\n]*\| (\d)/3 ", text)  # redrawn in place
    # Drawn from 0 and redrawn in place, never past the total; which draws tqdm skips (at most one
    # per 0.1 s, and with leave=False none at close) depends on the machine's speed.
    done = [int(d) for _, d in bars]
    assert bars[0] == ("0", "0") and done == sorted(done) and done[-1] <= 3


def test_a_run_of_more_than_an_hour_on_the_cpu_is_warned_of_with_quicker_settings(shapes_pe, tmp_path):
    out = run(shapes_pe, *TINY, "--batch-size", 57, "--epochs", 1 << 20, "--stop-after", 1, "--quiet", "--run-dir", tmp_path / "r")
    m = re.search(r"^warning: this run would take about (\d+) h (\d+) min on the CPU; for a first try, --epochs 3 takes about "
                  r"(\d+ s|\d+ min \d+ s); or use a GPU \(--device cuda\)$", out.stderr, re.M)  # fmt: skip
    assert m and int(m.group(1)) >= 1 and out.stderr.count("\n") == 1  # --quiet keeps warnings, and only them
    assert quicker(64, 30) == ("--width 16 --epochs 3", (16 / 64) ** WIDTH_EXPONENT * 3 / 30) and 1 < WIDTH_EXPONENT <= 2
    assert quicker(16, 3) == ("--width 8 --epochs 1", (8 / 16) ** WIDTH_EXPONENT / 3) and quicker(8, 1) is None
    assert quicker(None, 30) == ("--epochs 3", 3 / 30) and quicker(None, 1) is None  # a torchvision backbone: --width is not its
    assert quicker(8, 30) == ("--epochs 3", 0.1)
    assert [duration(s) for s in (0.2, 42, 370, 11100)] == ["1 s", "42 s", "6 min 10 s", "3 h 5 min"]


# -- defaults shown ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_every_option_shows_its_default_in_help(command):
    cmd = pptrain.commands[command]
    ctx = click.Context(cmd, info_name=command)
    missing = []
    for p in cmd.params:
        if isinstance(p, click.Option) and "--help" not in p.opts:
            _, text = p.get_help_record(ctx)
            if "[default: " not in text.replace("\n", " "):
                missing.append(p.opts[0])
    assert missing == []


def test_adapt_help_describes_every_choice_and_the_real_default_of_every_method(shapes_src, session_key, tmp_path):
    text = pptrain.commands["train"].params[[p.name for p in pptrain.commands["train"].params].index("adapt")].help
    for choice in ADAPT_CHOICES:
        assert re.search(rf"\b{choice} \(", text), choice
    assert "[default: by the dataset's cipher: invariant for pe and np, tanaka for le, ele and etc, blockset for bsm, pixel for plain]" in text
    named = {m: a for a, methods in ADAPT_DEFAULTS.items() for m in methods}
    assert set(named) == set(method_names())  # every registered method, no other
    for method in method_names():
        keyed = cipher_class(method).needs_key
        out = encrypt(shapes_src, tmp_path / method, session_key if keyed else None, method=method, shard_size=200)
        assert default_adaptation(open_dataset(out).manifest) == named[method], method


def readme_rows() -> dict[str, str]:
    """README.md's pptrain option tables: every option named in a row's first cell -> its default cell."""
    text = ROOT.joinpath("README.md").read_text()
    section = text[text.index("### `pptrain OUT`") : text.index("### Batch jobs")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`-"):
            for name in re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-z])\b", cells[0]):
                rows[name] = cells[1]
    return rows


def test_readme_tables_give_every_pptrain_option_and_its_default():
    rows = readme_rows()
    for command in ("train", "eval", "predict"):
        for p in pptrain.commands[command].params:
            if not isinstance(p, click.Option) or "--help" in p.opts:
                continue
            name = next(o for o in p.opts if o.startswith("--"))
            assert rows.get(name), f"{command} {name}"
            if p.is_flag:
                assert rows[name] == "off", name
            elif isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
                assert f"{p.default:g}" in rows[name], name
            elif isinstance(p.default, str) and p.default:
                assert p.default in rows[name], name
