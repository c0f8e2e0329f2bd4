"""Every knob of a training run in one place (airbench style): one dataclass, units in comments.

``None`` means "the recipe's value" (recipe.py); :meth:`Settings.resolved` fills them in, and
config.json records both what was asked and what ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from .recipe import RECIPES, Recipe

DEFAULT_AUGMENT = ("crop", "flip")  # [P]'s augmentation: shift by pad-and-crop, horizontal flip
ADAPT_CHOICES = ("pixel", "tanaka", "none")  # the adaptation networks of model.py


def adapt_name(value: str | bool | None) -> str | None:
    """The adaptation network's name; run directories from before ``--adapt`` recorded a bool."""
    if isinstance(value, bool):
        return "pixel" if value else "none"
    return value


@dataclass(frozen=True)
class Settings:
    # --- data
    data: str = ""  # dataset directory written by `ppencrypt dataset`
    train_split: str = "train"
    test_split: str = "test"  # evaluated after every epoch; skipped if the dataset lacks it
    stream: bool = False  # force the streaming loader even when the split fits in memory
    memory_limit: int = 4096  # MiB: train + test pixels above this are streamed, not held on the device
    workers: int = 2  # streaming loader processes per rank (0: in the training process)
    shuffle_buffer: int = 20_000  # samples the streaming loader mixes across shards
    # --- augmentation (augment.py), applied to ciphertext on the device
    augment: tuple[str, ...] = DEFAULT_AUGMENT
    pad: int = 4  # pixels of padding for 'crop': shifts are uniform in -pad..pad
    mix_alpha: float = 1.0  # Beta(alpha, alpha) for the mixup weight / cutmix area
    # --- model (model.py)
    width: int = 64  # base channels; 64 is ResNet-18, the stages have width x 1, 2, 4, 8
    # pixel ([P]'s 1x1 network) | tanaka (the block-wise baselines') | none; None: the dataset's
    # method decides (tanaka for block ciphers, whose manifest records a block size; else pixel)
    adapt: str | None = None
    # --- optimisation; None: the recipe's value
    recipe: str = "fast"  # paper | fast (recipe.py)
    epochs: int | None = None  # passes over the train split
    batch_size: int | None = None  # images per optimiser step, summed over all ranks
    lr: float | None = None  # peak learning rate
    # --- runtime
    device: str = "auto"  # auto: cuda when present, else cpu
    seed: int = 0  # model init, data order and augmentation draws all derive from it
    compile: bool = False  # torch.compile the model
    run_dir: str = ""  # config.json, metrics.jsonl, checkpoint.pt, curves.png
    stop_after: int | None = None  # end the process after this epoch (resume later with --resume)
    trace: bool = False  # each rank writes the sample indices of every batch (trace-rank<R>.jsonl)

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


# Options a --resume takes afresh from its own command line: they change where and how fast a
# run goes, not its result. Every other option comes from config.json (the loader options
# too: the streaming order depends on the worker count and on streaming at all).
PER_INVOCATION = frozenset({"data", "run_dir", "device", "compile", "stop_after", "trace"})
