"""Every knob of a training run in one place (airbench style): one dataclass, units in the help.

This is the single source of the defaults, of the options' help and of the rules between
options: ``pptrain``'s click options are made from these fields and named as they are (cli.py),
:meth:`Settings.from_options` builds the settings from them, and config.json records the
settings as asked and as resolved. ``None`` means "the recipe's value" (recipe.py);
:meth:`Settings.resolved` fills them in, and :meth:`Settings.check` checks the result. A rule
broken raises :class:`OptionError` naming the option; only cli.py turns it into a usage error.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path

from ppencrypt.formats import dataset_name

from .errors import OptionError
from .recipe import MIN_STEPS, RECIPES, Recipe

DEFAULT_AUGMENT = ("crop", "flip")  # [P]'s augmentation: shift by pad-and-crop, horizontal flip
ADAPT_CHOICES = ("pixel", "invariant", "tanaka", "blockset", "none")  # the adaptation networks of model.py
STEM_CHOICES = ("auto", "cifar", "imagenet")  # model.py; auto: by image size
# --adapt's default per built-in method, as train.default_adaptation decides it from the manifest's
# cipher section. pptrain never imports the ciphers, so the methods are named here for the help;
# test_trainer_manners checks every registered method against the code.
ADAPT_DEFAULTS = {"invariant": ("pe", "np"), "tanaka": ("le", "ele", "etc"), "blockset": ("bsm",), "pixel": ("plain",)}


def _listed(names) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


ADAPT_DEFAULT_HELP = "by the dataset's cipher: " + ", ".join(f"{a} for {_listed(m)}" for a, m in ADAPT_DEFAULTS.items())
RECIPE_EPOCHS = ", ".join(f"{name} {r.epochs}" for name, r in RECIPES.items())
RECIPE_BATCH = ", ".join(f"{name} {f'sized to the train split (at most {r.batch_size}, at least {MIN_STEPS} steps per epoch)' if r.scaled else r.batch_size}"
                         for name, r in RECIPES.items())  # fmt: skip
RECIPE_LR = ", ".join(f"{name} {f'{r.lr} x sqrt(batch/{r.batch_size})' if r.scaled else r.lr}" for name, r in RECIPES.items())
MAX_WIDTH = 1024  # --width: 2.9e9 parameters already; a run record claiming more is refused (record.py)


def setting(default, help: str):
    """A field with its command-line help (``[recipe's]`` etc. are part of the text)."""
    return field(default=default, metadata={"help": help})


def adapt_name(value: str | bool | None) -> str | None:
    """The adaptation network's name; run directories from before ``--adapt`` recorded a bool."""
    if isinstance(value, bool):
        return "pixel" if value else "none"
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    # --- data
    data: str = setting("", "Dataset written by `ppencrypt dataset`: a folder, or a URL (s3://, gs://, https://).")
    train_split: str = setting("train", "Split to train on.")
    test_split: str = setting("test", "Evaluated every epoch; by default 'test', else 'val' when the dataset has no test split.")
    stream: bool = setting(False, "Stream shards even when the data fits in memory.")
    memory_limit: int = setting(4096, "MiB of pixels (train + test) to hold on the device; more is streamed.")
    workers: int = setting(2, "Streaming loader processes per rank (0: in the training process).")
    shuffle_buffer: int = setting(20_000, "Samples mixed across shards when streaming.")
    prefetch: int = setting(2, "Shards each streaming reader fetches ahead, in threads, while it decodes one (0: none).")
    cache_dir: str = setting("", "For a URL dataset: keep its downloaded files here (named by their hash, checked on every "
                                 "read), so later epochs and runs do not download them again. [default: no cache]")
    cache_limit: int = setting(10_240, "MiB the --cache-dir may hold; the least recently used files go first.")
    # --- augmentation (augment.py), applied to ciphertext on the device
    augment: tuple[str, ...] | None = setting(
        None, "Augmentations in the encrypted domain. [default: crop,flip on the recipe's schedule (fast: the last "
        f"{RECIPES['fast'].tail} epochs unaugmented, so none for {RECIPES['fast'].tail} epochs or fewer); none for a "
        "dataset the client augmented "
        "(ppencrypt dataset --copies)]",
    )  # fmt: skip
    augment_from: int | None = setting(
        None, "First epoch (counting from 1) whose batches are augmented; the epochs before it train on the "
        "ciphertext as stored. [default: 1]",
    )  # fmt: skip
    augment_until: int | None = setting(
        None, "Last epoch (counting from 1) whose batches are augmented; the epochs after it train on the "
        "ciphertext as stored, as it is evaluated. [default: the recipe's schedule; the last epoch when --augment "
        "or --augment-from is given]",
    )  # fmt: skip
    pad: int = setting(4, "Largest shift of 'crop', in pixels.")
    mix_alpha: float = setting(1.0, "Beta(a, a) parameter of mixup and cutmix.")
    # --- model (model.py)
    width: int = setting(64, f"Base channels (64 is ResNet-18; the stages have width x 1, 2, 4, 8; at most {MAX_WIDTH}).")
    adapt: str | None = setting(
        None, "Adaptation network in front of the ResNet: pixel ([P]'s 1x1 convolutions); invariant (the same "
        "behind a fixed statistic that the cipher's pixel group leaves unchanged, so a key per image and a "
        "dataset key look alike to it); tanaka (the block-wise baselines', block side from the manifest); blockset (features of each block that no "
        "block key changes, pooled over the blocks without their positions: bsm's); none "
        f"(the ResNet takes the image). [default: {ADAPT_DEFAULT_HELP}]",
    )  # fmt: skip
    arch: str = setting("cifar-resnet18", "Backbone behind the adaptation network: cifar-resnet18 ([P]'s ResNet-18, "
                        "--width sets its base width), or any torchvision classifier by name (resnet50, convnext_tiny, "
                        "efficientnet_b0, vit_b_16, ...; `pptrain archs` lists them), randomly initialised.")  # fmt: skip
    stem: str = setting("auto", "The backbone's stem: cifar (3x3 stride-1 first convolution, no max-pool), imagenet "
                        "(torchvision's: ResNet's 7x7 stride 2 + max-pool), auto (cifar up to 64 px, imagenet above; "
                        "imagenet for the patch-embedding models vit_* and maxvit_t).")  # fmt: skip
    # --- optimisation; None: the recipe's value
    recipe: str = setting("fast", "Training recipe (recipe.py).")
    epochs: int | None = setting(None, f"Passes over the train split. [default: the recipe's: {RECIPE_EPOCHS}]")
    batch_size: int | None = setting(None, f"Images per optimiser step, all processes together. [default: the recipe's: {RECIPE_BATCH}]")
    lr: float | None = setting(None, f"Peak learning rate. [default: the recipe's: {RECIPE_LR}]")
    # --- runtime
    device: str = setting("auto", "auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")
    seed: int = setting(0, "Seeds the model, data order and augmentation.")
    compile: bool = setting(False, "torch.compile the model.")
    run_dir: str = setting("", "Run directory: config.json, metrics.jsonl, checkpoint.pt, curves.png. [default: runs/<name of OUT>]")
    stop_after: int | None = setting(None, "Stop after this epoch; --resume continues later. [default: the last epoch]")
    progress_every: float = setting(60.0, "Seconds between progress lines (rate, ETA, loss) when stderr is not a terminal "
                                    "(Slurm, CI, a log file); on a terminal a progress bar. 0: none.")  # fmt: skip
    trace: bool = setting(False, "Each process records the sample indices of its batches (trace-rank<R>.jsonl).")

    @classmethod
    def from_options(cls, *, data: str, run_dir: str | None = None, no_adapt: bool = False, **options) -> Settings:
        """The settings a ``pptrain train`` command line asks for: its options, named as the
        fields, and ``--no-adapt`` (the same as ``--adapt none``, which it must not contradict).
        Without ``--run-dir``, the run goes to runs/<name of the dataset>."""
        adapt = options.get("adapt")
        if no_adapt and adapt not in (None, "none"):
            raise OptionError("--no-adapt", f"--no-adapt contradicts --adapt {adapt}")
        if no_adapt:
            options["adapt"] = "none"
        return cls(data=data, run_dir=run_dir or str(Path("runs") / dataset_name(data)), **options)

    @staticmethod
    def field_of(option: str) -> str:
        """The field a ``pptrain train`` parameter sets (``no_adapt`` sets ``adapt``)."""
        return OPTION_FIELDS.get(option, option)

    def check(self, world: int = 1) -> None:
        """The rules between resolved settings, for a run of ``world`` processes (those that
        need the dataset are train.py's)."""
        for name, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--width", self.width),
                            ("--augment-from", self.augment_from), ("--augment-until", self.augment_until)):  # fmt: skip
            if value is not None and value < 1:
                raise OptionError(name, f"{name} must be at least 1, not {value}")
        from .arch import ArchError, check_arch  # torchvision: loaded only when settings are checked

        try:
            check_arch(self.arch)
        except ArchError as e:
            raise OptionError(e.option, str(e)) from None
        if self.width > MAX_WIDTH:
            raise OptionError("--width", f"--width must be at most {MAX_WIDTH}, not {self.width}")
        if self.augment_until is not None and self.augment_until < (self.augment_from or 1):
            raise OptionError("--augment-until", f"--augment-until {self.augment_until} is before --augment-from {self.augment_from or 1}: "
                              "no epoch would be augmented (for that, --augment none)")  # fmt: skip
        if self.batch_size is not None and self.batch_size % world:
            raise OptionError("--batch-size", f"batch size {self.batch_size} does not split evenly over {world} processes")

    @property
    def recipe_values(self) -> Recipe:
        return RECIPES[self.recipe]

    def resolved(self, count: int | None = None, world: int = 1) -> Settings:
        """The settings with the recipe's values in place of every None: its epochs, and its
        batch and peak learning rate for a train split of ``count`` images (the fast recipe
        sizes them to the split; an explicit --batch-size scales its learning rate alike)."""
        r = self.recipe_values
        batch, lr = r.sized(count, world) if count is not None else (r.batch_size, r.lr)
        if self.batch_size is not None:
            batch, lr = self.batch_size, r.lr_for(self.batch_size)
        return replace(
            self,
            epochs=r.epochs if self.epochs is None else self.epochs,
            batch_size=batch,
            lr=lr if self.lr is None else self.lr,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = None if self.augment is None else list(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("augment") is not None:
            values["augment"] = tuple(values["augment"])
        if "adapt" in values:
            values["adapt"] = adapt_name(values["adapt"])
        return cls(**values)


FIELDS: dict[str, Field] = {f.name: f for f in fields(Settings)}
OPTION_FIELDS = {"no_adapt": "adapt"}  # command-line parameters that set a field of another name


def default(name: str):
    f = FIELDS[name]
    return f.default if f.default is not MISSING else f.default_factory()


def help_of(name: str) -> str:
    return FIELDS[name].metadata["help"]


# Options a --resume takes afresh from its own command line: they change where and how fast a
# run goes, not its result (read-ahead keeps the order; the cache holds verified bytes). Every other option comes from config.json (the loader options
# too: the streaming order depends on the worker count and on streaming at all).
PER_INVOCATION = frozenset({"data", "run_dir", "device", "compile", "stop_after", "trace", "prefetch", "cache_dir", "cache_limit",
                            "progress_every"})  # fmt: skip
