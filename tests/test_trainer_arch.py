"""pptrain --arch: torchvision backbones behind the adaptation network, on a photo dataset made
from the vendored ImageNet JPEGs, through train, --resume, eval and predict; and the refusals."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ppencrypt.cli import cli as ppencrypt
from trainer_fixtures import encrypt, metrics, run, session_key, shapes_pe, shapes_src  # noqa: F401  (fixtures)

PHOTOS = sorted((Path(__file__).parent / "data" / "imagenet").glob("*.jpg"))
SIDE = 96  # above 64 px: --stem auto is torchvision's stem


@pytest.fixture(scope="module")
def photos(tmp_path_factory, session_key) -> Path:
    """The 20 photos as train/ (16) and val/ (4) of two classes, resized to 96 px and encrypted
    with pe under image-scope keys (the default)."""
    src = tmp_path_factory.mktemp("photos") / "src"
    for i, photo in enumerate(PHOTOS):
        folder = src / ("val" if i % 5 == 4 else "train") / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    return encrypt(src, tmp_path_factory.mktemp("photos-pe") / "out", session_key, size=SIDE, shard_size=8)


@pytest.fixture(scope="module")
def queries(photos, session_key, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("queries") / "q"
    r = CliRunner().invoke(ppencrypt, ["image", str(PHOTOS[4]), str(PHOTOS[9]), "--key", str(session_key), "--like", str(photos), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return sorted(out.glob("*.png"))


# (arch, --stem given, the stem recorded, the stem's first convolution as its state dict names it)
ARCHS = [
    ("resnet50", "auto", "imagenet", "backbone.conv1.weight"),
    ("efficientnet_b0", "cifar", "cifar", "backbone.features.0.0.weight"),
]


def check_first_epoch(run_dir: Path, arch: str, recorded: str, first: str) -> None:
    assert [r["epoch"] for r in metrics(run_dir)] == [1]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["settings"]["arch"], config["model"]["arch"], config["model"]["stem"]) == (arch, arch, recorded)
    assert config["model"]["adapt"] == "invariant" and config["dataset"]["shape"] == [SIDE, SIDE, 3]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    # The adaptation network's 32 maps feed the backbone's stem, whatever its kernel.
    assert state["adapt.conv2.weight"].shape[0] == 32 and state[first].shape[1] == 32
    kernel = state[first].shape[-1]
    assert kernel == 3 if recorded == "cifar" else kernel > 3
    assert sum(t.numel() for k, t in state.items() if "running" not in k and "num_batches" not in k) == config["model"]["parameters"]


def check_predict(run_dir: Path, queries: list[Path]) -> None:
    lines = run("predict", run_dir, *queries, "--top", 2, "--device", "cpu").stdout.splitlines()
    assert len(lines) == 2
    for line, query in zip(lines, queries):
        path, a, pa, b, pb = line.split("\t")
        assert path == str(query) and {a, b} == {"even", "odd"} and float(pa) + float(pb) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("arch, stem, recorded, first", ARCHS, ids=[a[0] for a in ARCHS])
def test_arch_trains_resumes_evaluates_and_predicts(photos, queries, tmp_path, arch, stem, recorded, first):
    run_dir = tmp_path / arch
    common = [photos, "--arch", arch, "--stem", stem, "--epochs", 2, "--batch-size", 8, "--run-dir", run_dir, "--quiet", "--device", "cpu"]
    run(*common, "--stop-after", 1)
    check_first_epoch(run_dir, arch, recorded, first)
    assert "pass --resume" in run(*common, code=1).output
    resumed = run(*[a for a in common if a != "--quiet"], "--resume", "--progress-every", 0)
    assert f"; {arch} ({recorded} stem) behind the invariant adaptation network," in resumed.output  # the plan line names the backbone
    history = metrics(run_dir)
    assert [r["epoch"] for r in history] == [1, 2] and all(r["val_acc"] is not None for r in history)  # named after the split
    got = json.loads(run("eval", run_dir, photos, "--json", "--device", "cpu").stdout)
    assert got["split"] == "val" and got["images"] == 4
    assert got["accuracy"] == pytest.approx(history[-1]["val_acc"])
    check_predict(run_dir, queries)


def test_a_vision_transformer_is_built_for_the_datasets_image_size(photos, queries, tmp_path):
    """vit_b_32's position embedding has one entry per 32x32 patch of the image it was built
    for: 9 + the class token at 96 px. predict rebuilds it from the record (86 M parameters: one
    epoch and one reload, the checkpoint is 0.7 GB)."""
    run_dir = tmp_path / "vit"
    run(photos, "--arch", "vit_b_32", "--epochs", 1, "--batch-size", 8, "--run-dir", run_dir, "--quiet", "--device", "cpu")
    check_first_epoch(run_dir, "vit_b_32", "imagenet", "backbone.conv_proj.weight")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True, mmap=True)["model"]
    assert state["backbone.encoder.pos_embedding"].shape[1] == (SIDE // 32) ** 2 + 1
    check_predict(run_dir, queries)


@pytest.mark.parametrize("args, option, message", [
    (["--arch", "resnet5O"], "--arch", "unknown architecture 'resnet5O'; did you mean resnet50"),
    (["--arch", "resnet50", "--width", "8"], "--width", "--width sets the base width of cifar-resnet18; --arch resnet50 has torchvision's own widths"),
    (["--arch", "vit_b_16", "--stem", "cifar"], "--stem", "--arch vit_b_16 has a patch-embedding stem built for its image size"),
    (["--arch", "vgg11"], "--arch", "--arch vgg11 cannot take 28x28 images (Given input size: (512x1x1). Calculated output size: (512x0x0)"),
    (["--arch", "vit_b_16"], "--arch", "--arch vit_b_16 cannot be built for 28x28 images (Input shape indivisible by patch size!)"),
])  # fmt: skip
def test_an_arch_that_does_not_fit_is_a_usage_error_naming_the_option(shapes_pe, tmp_path, args, option, message):
    """Exit 2, one line naming the option, before anything is written or allocated (28 px
    Fashion-MNIST: VGG's five max-pools leave nothing; 28 is no multiple of ViT's 16 px patches)."""
    result = run(shapes_pe, *args, "--epochs", 1, "--run-dir", tmp_path / "run", "--quiet", "--device", "cpu", code=2)
    assert f"Invalid value for '{option}'" in result.output and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_the_run_record_bounds_the_arch(photos, tmp_path):
    """A run directory from the server names an arch: only one of the list is built (record.py's
    CHOICES), and a record without one (before --arch) is the CIFAR ResNet-18's."""
    run_dir = tmp_path / "run"
    run(photos, "--width", 4, "--epochs", 1, "--batch-size", 8, "--run-dir", run_dir, "--quiet", "--device", "cpu")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["arch"] == config["settings"]["arch"] == "cifar-resnet18"
    for section, value in (("model", "os.system"), ("settings", "resnet50; rm -rf /")):
        hostile = json.loads(json.dumps(config))
        hostile[section]["arch"] = value
        (run_dir / "config.json").write_text(json.dumps(hostile))
        out = run("predict", run_dir, PHOTOS[0], code=1).output
        assert f"{section}: arch {value!r} is none of cifar-resnet18, alexnet" in out and "Traceback" not in out
    del config["model"]["arch"], config["settings"]["arch"]
    (run_dir / "config.json").write_text(json.dumps(config))
    got = json.loads(run("eval", run_dir, photos, "--json", "--device", "cpu").stdout)
    assert got["accuracy"] == pytest.approx(metrics(run_dir)[-1]["val_acc"])
    # Another arch's record over this checkpoint: refused by the checkpoint's shapes, nothing loaded.
    config["model"]["arch"], config["model"]["parameters"] = "resnet18", None
    (run_dir / "config.json").write_text(json.dumps(config))
    assert "does not fit the model" in run("eval", run_dir, photos, "--device", "cpu", code=1).output


def test_every_arch_is_built_on_the_meta_device_behind_the_adaptation_network():
    """Every name --arch takes, at 224 px (where every one of them takes the images): built on
    the meta device as the checkpoint checks build it (nothing allocated, RegNet's tensor
    arithmetic included), its first convolution taking the adaptation network's 32 channels,
    and a forward pass fits. The stem auto picks at 224 px is torchvision's; at 32 px, CIFAR's
    but for the patch-embedding models."""
    from pptrain.arch import ARCHS, TORCHVISION, check_fits, stem_for
    from pptrain.checkpoint import shapes_of
    from pptrain.model import ModelSpec, build_model

    assert ARCHS[0] == "cifar-resnet18" and len(TORCHVISION) >= 80 and {"resnet50", "convnext_tiny", "efficientnet_b0", "vit_b_16"} <= set(ARCHS)
    for arch in ARCHS:
        spec = ModelSpec(arch=arch, in_channels=3, num_classes=7, adapt="pixel", stem=stem_for(224, 224, arch), height=224, image_width=224)
        shapes = shapes_of(lambda: build_model(spec))
        first = next(shape for name, (shape, _) in shapes.tensors.items() if name.endswith("weight") and len(shape) == 4 and not name.startswith("adapt."))
        assert first[1] == 32, arch
        # The classifier (a linear layer, or SqueezeNet's 1x1 convolution) has the dataset's classes.
        assert [n for n, (shape, _) in shapes.tensors.items() if n.endswith("weight") and len(shape) in (2, 4) and shape[0] == 7], arch
        check_fits(lambda: build_model(spec), arch, 3, 224, 224)
        assert stem_for(32, 32, arch) == ("imagenet" if arch.startswith(("vit_", "maxvit")) else "cifar")
