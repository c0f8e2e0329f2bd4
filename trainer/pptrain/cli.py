"""The ``pptrain`` command. The only module that knows about exit codes: library errors
(:class:`TrainerError`, :class:`ppencrypt.errors.PipelineError`) become one-line messages with
exit 1, option errors (:class:`OptionError`) click's usage errors with exit 2.

``train``'s parameters are named as the :class:`Settings` fields they set, so an option is a
field (settings.py: default, help, rules) and one ``@setting`` line here (its click type).

``pptrain OUT [options]`` is short for ``pptrain train OUT [options]``.
"""

from __future__ import annotations

import json
import sys

import click
from click.core import ParameterSource

from ppencrypt.entry import run_command
from ppencrypt.errors import PipelineError
from ppencrypt.formats import shown_url, without_credentials

from .augment import COMMUTING
from .errors import OptionError, TrainerError
from .recipe import MIN_STEPS, RECIPES
from .settings import ADAPT_CHOICES, STEM_CHOICES, Settings, default, help_of

SUBCOMMAND_HELP = ("-h", "--help", "--version")
OFF = "  [default: off]"  # a flag's default, which click shows only for flags that default to on


class Command(click.Command):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OptionError as e:  # in the subcommand's context, so the usage line is its own
            raise click.BadParameter(str(e), ctx=ctx, param_hint=f"'{e.option}'") from None
        except (TrainerError, PipelineError) as e:  # a URL's credentials are never printed, whoever quoted it
            raise click.ClickException(without_credentials(str(e))) from None
        except OSError as e:  # disk full, permission denied: the environment's fault, not ours
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


class Group(click.Group):
    command_class = Command

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in SUBCOMMAND_HELP:
            args = ["train", *args]
        return super().parse_args(ctx, args)


def setting(name: str, *decls: str, help: str | None = None, **kwargs):
    """A click option for Settings field ``name``: its default and help come from the field
    (settings.py), so they are stated once. ``--name`` unless ``decls`` say otherwise."""
    value = kwargs.pop("default", default(name))
    kwargs.setdefault("show_default", value is not None and not isinstance(value, bool) and value != "")
    help = help or help_of(name)
    if isinstance(value, bool):
        kwargs.setdefault("is_flag", True)
        help += OFF if not value else ""
    return click.option(*(decls or ("--" + name.replace("_", "-"),)), default=value, help=help, **kwargs)


def _recipe_help() -> str:
    def brief(r) -> str:
        batch = (f"batch up to {r.batch_size} (at least {MIN_STEPS} steps per epoch), lr {r.lr} x sqrt(batch/{r.batch_size})"
                 if r.scaled else f"batch {r.batch_size}, lr {r.lr}")  # fmt: skip
        return f"{r.epochs} epochs, {batch}, {r.schedule} schedule"

    return help_of("recipe") + " " + "; ".join(f"{n}: {brief(r)}" for n, r in RECIPES.items())


def _arch(ctx, param, value: str) -> str:
    """--arch checked before the dataset is opened: a typo is a usage error naming the option."""
    from .arch import ArchError, check_arch

    try:
        check_arch(value)
    except ArchError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def _augment_list(ctx, param, values) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(n for v in values for n in v.split(",") if n.strip())


DEVICE = setting("device")
WORKERS = setting("workers", type=click.IntRange(min=0))
MEMORY_LIMIT = setting("memory_limit", type=click.IntRange(min=0))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, no_args_is_help=True)
@click.version_option(package_name="ppencrypt", prog_name="pptrain")
def cli():
    """Train and use ResNet-18 (or any torchvision classifier: --arch) with [P]'s adaptation
    network on datasets encrypted by ppencrypt, on an untrusted server that never holds the key.

    `pptrain OUT ...` is short for `pptrain train OUT ...`."""


@cli.command()
@click.argument("data", metavar="OUT", type=click.Path())
@setting("epochs", type=int)
@setting("batch_size", type=int)
@setting("lr", type=float)
@setting("recipe", type=click.Choice(list(RECIPES)), help=_recipe_help())
@click.option("--augment", multiple=True, callback=_augment_list, metavar="LIST",
              help=f"{help_of('augment')} Comma-separated or repeated: {', '.join(COMMUTING)}; 'none' for none.")  # fmt: skip
@setting("augment_from", type=click.IntRange(min=1))
@setting("augment_until", type=click.IntRange(min=1))
@setting("pad", type=int)
@setting("mix_alpha", type=float)
@setting("adapt", type=click.Choice(ADAPT_CHOICES))
@click.option("--no-adapt", is_flag=True, help="Same as --adapt none." + OFF)
@setting("width", type=int)
@setting("arch", metavar="NAME", callback=_arch)
@setting("stem", type=click.Choice(STEM_CHOICES))
@DEVICE
@setting("seed", type=int)
@setting("run_dir", type=click.Path(file_okay=False), default=None)
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its checkpoint." + OFF)
@click.option("--overwrite", is_flag=True, help="Start afresh in a --run-dir that holds a run, removing its files; a "
              "directory that holds anything else is refused. (A run that never finished an epoch is replaced "
              "without it.)" + OFF)  # fmt: skip
@setting("compile")
@WORKERS
@setting("stream")
@MEMORY_LIMIT
@setting("shuffle_buffer", type=click.IntRange(min=1))
@setting("prefetch", type=click.IntRange(min=0))
@setting("cache_dir", type=click.Path(file_okay=False))
@setting("cache_limit", type=click.IntRange(min=1))
@setting("train_split")
@setting("test_split")
@setting("stop_after", type=click.IntRange(min=1))
@setting("trace")
@setting("progress_every", type=click.FloatRange(min=0), metavar="SECONDS")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or lines, no per-epoch lines, no estimate (warnings "
              "and the summary stay)." + OFF)  # fmt: skip
@click.pass_context
def train(ctx, resume, overwrite, quiet, **options):
    """Train on dataset OUT (from `ppencrypt dataset`; a folder or a URL), evaluating on its test split (or val) each epoch."""
    from .train import train as run_training

    given = Settings.from_options(**options)
    explicit = {Settings.field_of(p) for p in ctx.params
                if ctx.get_parameter_source(p) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}  # fmt: skip
    outcome = run_training(given, explicit, resume=resume, quiet=quiet, log=lambda line: click.echo(line, err=True), overwrite=overwrite)
    if outcome.main:
        click.echo(outcome.summary)


@cli.command("eval")
@click.argument("run", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--split", default=None, help="Split to evaluate  [default: the split the run evaluated on, e.g. test]")
@click.option("--batch-size", type=int, default=512, show_default=True, help="Images per forward pass.")
@DEVICE
@MEMORY_LIMIT
@WORKERS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a sentence." + OFF)
def eval_(run, out, split, batch_size, device, memory_limit, workers, as_json):
    """Accuracy and loss of trained RUN on a split of dataset OUT."""
    from .infer import evaluate_run, load_run

    trained = load_run(run, device)
    split = split or trained.record.settings.test_split
    result = evaluate_run(trained, out, split, batch_size, memory_limit, workers)
    for w in result.warnings:
        click.echo(f"warning: {without_credentials(w)}", err=True)
    if as_json:
        click.echo(json.dumps({"run": run, "data": shown_url(out), "split": split, "images": result.count, "accuracy": result.accuracy, "loss": result.loss}))
    else:
        click.echo(f"{shown_url(out)} ({split}, {result.count} images): accuracy {100 * result.accuracy:.2f}%, loss {result.loss:.4f}")


@cli.command()
@click.argument("run", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True, help="Classes to list per image.")
@DEVICE
def predict(run, images, top, device):
    """Classes and probabilities for query IMAGES encrypted with `ppencrypt image --like`.

    Prints one line per image: the path, then class and probability pairs, tab-separated."""
    from .infer import load_run, predict as run_predict

    for p in run_predict(load_run(run, device), list(images), top):
        click.echo("\t".join([p.path, *(f"{name}\t{prob:.4f}" for name, prob in p.top)]))


@cli.command()
def archs():
    """The names --arch takes, one a line: cifar-resnet18 (the default), then torchvision's classifiers."""
    from .arch import ARCHS

    click.echo("\n".join(ARCHS))


def main(argv: list[str] | None = None) -> None:
    run_command(cli, argv, "pptrain")


if __name__ == "__main__":
    sys.exit(main())
