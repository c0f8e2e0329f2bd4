"""Every knob of a training run in one place (airbench style): one dataclass, units in the help.

This is the single source of the defaults and of the options' help: ``pptrain``'s click options
are made from these fields (cli.py), and config.json records the settings as asked and as
resolved. ``None`` means "the recipe's value" (recipe.py); :meth:`Settings.resolved` fills
them in.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace

from .recipe import RECIPES, Recipe

DEFAULT_AUGMENT = ("crop", "flip")  # [P]'s augmentation: shift by pad-and-crop, horizontal flip
ADAPT_CHOICES = ("pixel", "tanaka", "none")  # the adaptation networks of model.py


def setting(default, help: str):
    """A field with its command-line help (``[recipe's]`` etc. are part of the text)."""
    return field(default=default, metadata={"help": help})


def adapt_name(value: str | bool | None) -> str | None:
    """The adaptation network's name; run directories from before ``--adapt`` recorded a bool."""
    if isinstance(value, bool):
        return "pixel" if value else "none"
    return value


@dataclass(frozen=True)
class Settings:
    # --- data
    data: str = setting("", "Dataset written by `ppencrypt dataset`: a folder, or a URL (s3://, gs://, https://).")
    train_split: str = setting("train", "Split to train on.")
    test_split: str = setting("test", "Evaluated every epoch, if the dataset has it.")
    stream: bool = setting(False, "Stream shards even when the data fits in memory.")
    memory_limit: int = setting(4096, "MiB of pixels (train + test) to hold on the device; more is streamed.")
    workers: int = setting(2, "Streaming loader processes per rank (0: in the training process).")
    shuffle_buffer: int = setting(20_000, "Samples mixed across shards when streaming.")
    prefetch: int = setting(2, "Shards each streaming reader fetches ahead, in threads, while it decodes one (0: none).")
    cache_dir: str = setting("", "For a URL dataset: keep its downloaded files here (named by their hash, checked on every "
                                 "read), so later epochs and runs do not download them again. [no cache]")
    cache_limit: int = setting(10_240, "MiB the --cache-dir may hold; the least recently used files go first.")
    # --- augmentation (augment.py), applied to ciphertext on the device
    augment: tuple[str, ...] = setting(DEFAULT_AUGMENT, "Augmentations in the encrypted domain.")
    pad: int = setting(4, "Largest shift of 'crop', in pixels.")
    mix_alpha: float = setting(1.0, "Beta(a, a) parameter of mixup and cutmix.")
    # --- model (model.py)
    width: int = setting(64, "Base channels (64 is ResNet-18; the stages have width x 1, 2, 4, 8).")
    adapt: str | None = setting(
        None, "Adaptation network: pixel ([P]'s 1x1 convolutions), tanaka (the block-wise baselines', block side "
        "from the manifest), none. [default: the one the manifest names for its cipher: tanaka for block "
        "ciphers, else pixel]",
    )  # fmt: skip
    # --- optimisation; None: the recipe's value
    recipe: str = setting("fast", "Training recipe (recipe.py).")
    epochs: int | None = setting(None, "Passes over the train split [recipe's].")
    batch_size: int | None = setting(None, "Images per optimiser step, all processes together [recipe's].")
    lr: float | None = setting(None, "Peak learning rate [recipe's].")
    # --- runtime
    device: str = setting("auto", "auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")
    seed: int = setting(0, "Seeds the model, data order and augmentation.")
    compile: bool = setting(False, "torch.compile the model.")
    run_dir: str = setting("", "Run directory: config.json, metrics.jsonl, checkpoint.pt, curves.png [runs/<name of OUT>].")
    stop_after: int | None = setting(None, "Stop after this epoch; --resume continues later.")
    trace: bool = setting(False, "Each process records the sample indices of its batches (trace-rank<R>.jsonl).")

    @property
    def recipe_values(self) -> Recipe:
        return RECIPES[self.recipe]

    def resolved(self) -> Settings:
        """The settings with the recipe's values in place of every None."""
        r = self.recipe_values
        return replace(
            self,
            epochs=r.epochs if self.epochs is None else self.epochs,
            batch_size=r.batch_size if self.batch_size is None else self.batch_size,
            lr=r.lr if self.lr is None else self.lr,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if "augment" in values:
            values["augment"] = tuple(values["augment"])
        if "adapt" in values:
            values["adapt"] = adapt_name(values["adapt"])
        return cls(**values)


FIELDS: dict[str, Field] = {f.name: f for f in fields(Settings)}


def default(name: str):
    f = FIELDS[name]
    return f.default if f.default is not MISSING else f.default_factory()


def help_of(name: str) -> str:
    return FIELDS[name].metadata["help"]


# Options a --resume takes afresh from its own command line: they change where and how fast a
# run goes, not its result (read-ahead keeps the order; the cache holds verified bytes). Every other option comes from config.json (the loader options
# too: the streaming order depends on the worker count and on streaming at all).
PER_INVOCATION = frozenset({"data", "run_dir", "device", "compile", "stop_after", "trace", "prefetch", "cache_dir", "cache_limit"})
