"""The recipes: the fast recipe's batch and learning rate as a pure function of the train
split's size, the warm-up counted in steps, [P]'s recipe unchanged, the reference's cosine,
and BatchNorm statistics recomputed for evaluation."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ppencrypt.formats import open_dataset
from test_trainer_cli import TINY, metrics, run
from pptrain.augment import BatchAugment, normalise
from pptrain.batchnorm import calibrate
from pptrain.distributed import Dist
from pptrain.errors import OptionError
from pptrain.memory import MemoryLoader
from pptrain.model import PrivacyResNet
from pptrain.seeding import CALIBRATE, epoch_rng
from pptrain.recipe import MIN_STEPS, RECIPES
from pptrain.settings import Settings
from trainer_fixtures import encrypt, session_key, shapes_pe, shapes_src, write_three_shapes  # noqa: F401  (fixtures)

FAST, PAPER, REFERENCE = RECIPES["fast"], RECIPES["paper"], RECIPES["reference"]


@pytest.mark.parametrize("count, world, batch, lr", [
    (60_000, 1, 512, 0.4),  # Fashion-MNIST: 117 steps per epoch at the largest batch
    (2_000_000, 1, 512, 0.4),  # millions: the batch stops growing
    (51_200, 1, 512, 0.4),  # exactly MIN_STEPS steps of 512
    (51_199, 1, 256, 0.4 * 0.5**0.5),  # one image fewer: the batch halves, the rate by sqrt(2)
    (8_000, 1, 64, 0.4 / 8**0.5),  # the small set: 125 steps of 64 per epoch at lr 0.14
    (1_000, 1, 32, 0.1),  # below MIN_STEPS x MIN_BATCH the batch stops shrinking
    (19, 1, 19, 0.4 * (19 / 512) ** 0.5),  # ... unless the split is smaller: all of it in one step
    (19, 2, 18, 0.4 * (18 / 512) ** 0.5),  # ... a multiple of the process count
    (8_000, 3, 63, 0.4 * (63 / 512) ** 0.5),  # a multiple of the process count, rate scaled with it
])  # fmt: skip
def test_fast_recipe_sizes_batch_and_rate_from_the_split(count, world, batch, lr):
    assert FAST.sized(count, world) == (batch, pytest.approx(lr))
    if count >= MIN_STEPS * 32:
        assert count // FAST.sized(count, world)[0] >= MIN_STEPS


def test_paper_and_reference_recipes_do_not_scale():
    for recipe, batch, lr in ((PAPER, 128, 0.1), (REFERENCE, 128, 0.1)):
        assert recipe.sized(8_000) == recipe.sized(60_000) == (batch, lr)
        assert recipe.lr_for(512) == lr  # an explicit --batch-size keeps [P]'s (or the reference's) rate


def test_settings_resolve_the_recipe_for_the_split_and_an_explicit_batch():
    s = Settings(data="x")
    assert (s.resolved(8_000).batch_size, s.resolved(8_000).lr) == (64, pytest.approx(0.1414, abs=1e-4))
    assert (s.resolved(60_000).batch_size, s.resolved(60_000).lr) == (512, 0.4)
    assert s.resolved(8_000).epochs == 30
    explicit = Settings(data="x", batch_size=128).resolved(60_000)
    assert (explicit.batch_size, explicit.lr) == (128, pytest.approx(0.2))  # batch and rate scaled together
    assert Settings(data="x", batch_size=64, lr=0.3).resolved(60_000).lr == 0.3
    paper = Settings(data="x", recipe="paper", batch_size=64).resolved(8_000)
    assert (paper.batch_size, paper.lr, paper.epochs) == (64, 0.1, 300)


def test_the_option_rules_are_the_settings_own():
    """The library refuses what the command line refuses, naming the option (cli.py only turns
    OptionError into a usage error)."""
    with pytest.raises(OptionError, match="^--no-adapt contradicts --adapt tanaka$") as e:
        Settings.from_options(data="x", adapt="tanaka", no_adapt=True)
    assert e.value.option == "--no-adapt"
    assert Settings.from_options(data="x", no_adapt=True).adapt == Settings.from_options(data="x", adapt="none", no_adapt=True).adapt == "none"
    assert Settings.from_options(data="s3://bucket/fm-pe").run_dir == str(Path("runs") / "fm-pe")
    assert Settings.from_options(data="s3://bucket/fm-pe", run_dir="elsewhere").run_dir == "elsewhere"
    assert Settings.field_of("no_adapt") == "adapt" and Settings.field_of("seed") == "seed"
    Settings(data="x", batch_size=16, augment_from=2, augment_until=2).check(4)
    for s, world, option, message in (
        (Settings(data="x", epochs=0), 1, "--epochs", "--epochs must be at least 1, not 0"),
        (Settings(data="x", augment_from=3, augment_until=2), 1, "--augment-until", "--augment-until 2 is before --augment-from 3: "),
        (Settings(data="x", batch_size=16), 3, "--batch-size", "batch size 16 does not split evenly over 3 processes"),
    ):  # fmt: skip
        with pytest.raises(OptionError) as e:
            s.check(world)
        assert e.value.option == option and str(e.value).startswith(message)


@pytest.mark.parametrize("epochs, until", [(1, 0), (3, 0), (4, 1), (5, 2), (10, 7), (30, 27), (300, 297)])
def test_fast_recipe_leaves_the_last_3_epochs_unaugmented_and_short_runs_alone(epochs, until):
    assert RECIPES["fast"].augment_until(epochs) == until
    assert RECIPES["paper"].augment_until(epochs) == RECIPES["reference"].augment_until(epochs) == epochs


def test_warmup_is_counted_in_steps_and_capped_on_short_runs():
    lr = 0.4
    for total in (1_000, 10_000):  # the same 50 steps whatever the run's length
        assert FAST.lr_at(lr, 0, total, 100) == pytest.approx(0.04)
        assert FAST.lr_at(lr, 25, total, 100) == pytest.approx(0.04 + 0.36 * 25 / 50)
        assert FAST.lr_at(lr, 50, total, 100) == pytest.approx(lr)
        assert FAST.lr_at(lr, total, total, 100) == 0.0
    assert FAST.warmup(100) == 20  # a run of 100 steps warms up for a fifth of them
    assert FAST.lr_at(lr, (100 + 20) // 2, 100, 10) == pytest.approx(lr / 2)  # then decays linearly


def test_paper_steps_and_reference_cosine():
    assert [PAPER.lr_at(0.1, e * 10, 40, 10) for e in range(4)] == [0.1, 0.1, pytest.approx(0.01), pytest.approx(0.001)]
    assert REFERENCE.lr_at(0.1, 0, 100, 10) == 0.1
    assert REFERENCE.lr_at(0.1, 50, 100, 10) == pytest.approx(0.05)
    assert REFERENCE.lr_at(0.1, 100, 100, 10) == pytest.approx(0.0)


def test_calibration_sets_batchnorm_statistics_to_the_average_over_the_augmented_head_images(shapes_pe):
    """bn1's running mean after calibration is the mean of its input over the first images,
    augmented as the epoch trained (fixed draws from the seed and the epoch)."""
    ds = open_dataset(shapes_pe)
    loader = MemoryLoader(ds, "train", 16, Dist(), torch.device("cpu"), 0, train=True)
    aug = BatchAugment(("crop", "flip"), ds.manifest.shape, 3, pad=4)
    torch.manual_seed(0)
    model = PrivacyResNet(1, 3, 4, "pixel")
    for m in model.modules():  # stale statistics, as a high learning rate leaves them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    calibrate(model, loader, 64, aug, 7, 2, torch.device("cpu"), Dist())
    rng = epoch_rng(7, 2, CALIBRATE, 0)
    x, y = loader.x[:64], loader.y[:64]
    inputs = torch.cat([aug(x[i : i + 16], y[i : i + 16], aug.draw(16, rng))[0] for i in range(0, 64, 16)])
    with torch.no_grad():
        stem = model.conv1(model.adapt(inputs.contiguous()))
        plain_stem = model.conv1(model.adapt(normalise(x).contiguous()))
    expected_mean = stem.mean(dim=(0, 2, 3))
    batch_vars = torch.stack([part.var(dim=(0, 2, 3), unbiased=True) for part in stem.split(16)])
    assert torch.allclose(model.bn1.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(model.bn1.running_var, batch_vars.mean(0), rtol=1e-4)
    assert not torch.allclose(model.bn1.running_mean, plain_stem.mean(dim=(0, 2, 3)), atol=1e-3)  # the augmentation counts
    assert model.bn1.momentum == 0.1  # restored for training
    again = PrivacyResNet(1, 3, 4, "pixel")
    again.load_state_dict(model.state_dict())
    calibrate(again, loader, 64, aug.off(), 7, 2, torch.device("cpu"), Dist())  # epochs before --augment-from
    assert torch.allclose(again.bn1.running_mean, plain_stem.mean(dim=(0, 2, 3)), atol=1e-5)


def test_fast_runs_record_their_sizing_and_evaluate_with_calibrated_statistics(shapes_pe, tmp_path):
    """114 images: batch 32 (the floor), lr 0.1; the checkpoint holds the calibrated
    statistics, so pptrain eval reproduces the last epoch exactly."""
    r = tmp_path / "r"
    run(shapes_pe, "--width", 4, "--epochs", 2, "--run-dir", r, "--quiet")
    c = json.loads((r / "config.json").read_text())["resolved"]
    assert (c["batch_size"], c["lr"], c["warmup_steps"], c["scaled"], c["calibrate"]) == (32, pytest.approx(0.1), 50, True, 2048)
    got = json.loads(run("eval", r, shapes_pe, "--json").stdout)
    assert got["loss"] == pytest.approx(metrics(r)[-1]["test_loss"], rel=1e-5)
    saved = torch.load(r / "checkpoint.pt", weights_only=True)["model"]
    spec = json.loads((r / "config.json").read_text())["model"]
    model = PrivacyResNet(1, 3, 4, spec["adapt"], group=spec["adapt_group"])
    model.load_state_dict(saved)
    loader = MemoryLoader(open_dataset(shapes_pe), "train", 32, Dist(), torch.device("cpu"), 0, train=True)
    aug = BatchAugment(tuple(c["augment"]), open_dataset(shapes_pe).manifest.shape, 3, pad=4)  # what the run trained with
    calibrate(model, loader, 2048, aug, 0, 1, torch.device("cpu"), Dist())  # the same weights, images and draws: the same statistics
    assert torch.allclose(model.bn1.running_var, saved["bn1.running_var"]) and torch.allclose(model.layer4[1].bn2.running_mean, saved["layer4.1.bn2.running_mean"])
    paper = tmp_path / "p"
    run(shapes_pe, *TINY, "--recipe", "paper", "--epochs", 1, "--run-dir", paper)
    c = json.loads((paper / "config.json").read_text())["resolved"]
    assert (c["batch_size"], c["lr"], c["warmup_steps"], c["scaled"], c["calibrate"], c["schedule"]) == (16, 0.1, 0, False, 0, "step")


def test_a_split_smaller_than_the_batch_floor_trains_on_all_of_it_per_step(session_key, tmp_path):
    """19 train images (the vendored Fashion-MNIST images, once each): the fast recipe's floor
    of 32 would leave no full batch, so it takes the whole split per step instead of refusing
    a --batch-size the user never gave."""
    src = write_three_shapes(tmp_path / "src", repeat=1)
    data = encrypt(src, tmp_path / "out", session_key, scope="image")
    r = tmp_path / "r"
    run(data, "--width", 4, "--epochs", 2, "--run-dir", r, "--quiet")
    c = json.loads((r / "config.json").read_text())["resolved"]
    assert (c["batch_size"], c["lr"]) == (19, pytest.approx(0.4 * (19 / 512) ** 0.5))
    assert [m["epoch"] for m in metrics(r)] == [1, 2]
    r = run(data, "--width", 4, "--recipe", "paper", "--epochs", 1, "--run-dir", tmp_path / "p", code=2)
    assert "Invalid value for '--batch-size': batch size 128 (all ranks) is larger than the train split (19 images)" in r.output
