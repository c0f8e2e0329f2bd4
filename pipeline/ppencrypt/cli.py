"""The ``ppencrypt`` command. The only module that knows about exit codes: library errors
(:class:`ppencrypt.errors.PipelineError`) become one-line messages with exit 1; click reports
usage errors with exit 2, the library's (:class:`ppencrypt.errors.OptionError`) too."""

from __future__ import annotations

import os
import sys
from typing import Callable

import click
from click.core import ParameterSource

from . import __version__
from .audit import AuditOptions, run_audit, table, write_report
from .audit.extra import EXTRA
from .ciphers import cipher_class, method_names
from .decrypt import decrypt_dataset
from .engine import ENGINES
from .dataset import EncryptOptions, encrypt_dataset
from .entry import run_command
from .errors import KeyFileError, MissingKeyFileError, OptionError, PipelineError
from .formats import STORAGES, is_url, open_dataset, shown_url, without_credentials
from .inspect import summary
from .keys import SCOPES, generate_key_file, load_key
from .parallel import default_workers
from .audit.shown import ShownAttack
from .preview import COLUMNS, preview as make_preview
from .progress import progress_bars
from .image import encrypt_queries
from .pull import pull_dataset
from .push import push_dataset
from .formats.manifest import SPLIT_NAME
from .frontier import help_text as measured_help
from .sources import StreamOptions
from .sources.shards import KINDS as SOURCE_FILES
from .verify import verify_dataset


class LiveChoice(click.Choice):
    """A choice among a registry's current names: a cipher method or a storage registered
    after this module was imported (a plug-in, a test) is accepted too."""

    def __init__(self, names: Callable[[], list[str]]):
        self.names, self.case_sensitive = names, True  # click.Choice would freeze the names

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.names())


class ByteSize(click.ParamType):
    """A size in bytes: ``268435456``, ``256MiB``, ``1GiB``, ``512KiB``."""

    name = "bytes"
    UNITS = {"": 1, "b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20, "gib": 1 << 30, "g": 1 << 30}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        number = text.rstrip("kmgib")
        unit = text[len(number) :]
        if not number.isdigit() or unit not in self.UNITS or int(number) * self.UNITS[unit] < 1:
            self.fail(f"{value!r} is not a size in bytes (like 268435456, 256MiB or 1GiB)", param, ctx)
        return int(number) * self.UNITS[unit]


class Command(click.Command):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OptionError as e:  # here, not in Group: the usage shown is this command's
            raise click.BadParameter(str(e), ctx=ctx, param_hint=e.option) from None


class Measured(Command):
    """``dataset``: its help ends with what each method measured on the frontier (frontier.py),
    read when the help is shown, not when the CLI is imported."""

    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(measured_help())


class Group(click.Group):
    command_class = Command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PipelineError as e:  # a URL's credentials are never printed, whoever quoted it
            raise click.ClickException(without_credentials(str(e))) from None
        except OSError as e:  # disk full, permission denied, ...: the input's fault, not ours
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


def _key(path: str | None, opens: str | os.PathLike | None = None):
    """The key at ``path`` (None without --key). A missing file gets advice that fits the
    command: a new key for new data (``dataset``), but never for data a key already encrypted
    (``opens``: the dataset it must open), which only that key opens."""
    if path is None:
        return None
    try:
        return load_key(path)
    except MissingKeyFileError as e:
        if opens is None:
            raise KeyFileError(f"{e} (create one with: ppencrypt keygen {e.path})") from None
        where = shown_url(opens)
        raise KeyFileError(f"{e} (only the key that encrypted {where} can open it: `ppencrypt inspect {where}` shows its key id; "
                           "a new key never can)") from None


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        click.echo(f"warning: {without_credentials(w)}", err=True)


DATASET_SCOPE_WARNING = (
    "--key-scope dataset shares one mask between every image of every dataset made with this key; "
    "`ppencrypt audit` recovers such images exactly from the ciphertexts alone (fr-shared) or from one known "
    "image (known-plaintext): docs/privacy.md. The default, --key-scope image, resists both."
)


def _salt_removed(value: str | None) -> None:
    if value is not None:
        raise click.BadParameter("removed: a salt given by hand gave its dataset's masks to whatever was encrypted with it "
                                 "(docs/security.md); use --reproduce DATASET, which checks that SRC is that dataset's source")


def _methods_help() -> str:
    return "; ".join(f"{n}: {cipher_class(n).summary}" for n in method_names())


KEY = click.option("--key", "key_path", metavar="KEYFILE", help="Secret key file (from ppencrypt keygen).")
DATASET_ID = click.option("--dataset-id", metavar="ID", help="The dataset meant (its manifest's dataset_id, printed by ppencrypt "
                          "dataset): any other dataset of the key is refused. [default: the one ppencrypt dataset wrote there, if any]")
AUDIT = AuditOptions()  # the audit's defaults, stated once
SHOWN = ShownAttack()  # preview --attack's
ATTACK_OPTIONS = {"public": "--public", "public_count": "--public-n", "train_steps": "--train-steps", "seed": "--seed"}  # preview's, for --attack
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary.")
OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace an existing output.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ppencrypt")
def cli():
    """Encrypt image datasets pixel by pixel for privacy-preserving training on an untrusted
    server (Sirichotedumrong et al., ICIP 2019)."""


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def keygen(path):
    """Write a new 256-bit secret key to PATH (mode 0600) and print its key id."""
    key = generate_key_file(path)
    click.echo(key.key_id)


def _split_sources(ctx, param, values) -> dict[str, str] | None:
    """--split NAME=SRC, repeated: {NAME: SRC} in the order given."""
    out: dict[str, str] = {}
    for value in values:
        name, eq, src = value.partition("=")
        if not eq or not src or not SPLIT_NAME.fullmatch(name):
            raise click.BadParameter(f"{value!r}: expected NAME=SRC, NAME a split name (letters, digits, '.', '_', '-')")
        if name in out:
            raise click.BadParameter(f"split {name!r} given twice")
        out[name] = src
    return out or None


def _source(ctx, param, value: str) -> str:
    """SRC: a folder, a URL, a brace pattern, one .tar or .parquet file, or '-'; another local
    file is a usage error, as click.Path(file_okay=False) made it."""
    if value != "-" and not is_url(value) and os.path.isfile(value) and os.path.splitext(value)[1].lower() not in SOURCE_FILES:
        raise click.BadParameter(f"{value!r} is a file: point SRC at the folder that holds the dataset (or at .tar or .parquet files)")
    return value


@cli.command(cls=Measured)
@click.argument("src", callback=_source)
@click.argument("out", type=click.Path())
@KEY
@click.option("--split", "split_sources", multiple=True, metavar="NAME=SRC", callback=_split_sources,
              help="Split NAME from source SRC (a folder, URL prefix or brace pattern); repeat for each split, with SRC '-'.")
@click.option("--classes", "classes_file", metavar="FILE", help="Class names, one a line in label order, for webdataset or "
              "parquet sources. [default: a parquet ClassLabel's names, else a classes.txt beside the files, else the label numbers]")
@click.option("--image-column", help="The image column of parquet sources. [default: the one image column]")
@click.option("--label-column", help="The label column of parquet sources. [default: the ClassLabel, label, ... column]")
@click.option("--method", type=LiveChoice(method_names), default="pe", show_default=True, help=_methods_help())
@click.option("--key-scope", type=click.Choice(SCOPES), default="image", show_default=True,
              help="image: a different mask for every image, and a fresh salt per dataset (private by default); "
                   "dataset: one mask shared by every image of every dataset made with the key ([P]'s model; "
                   "`ppencrypt audit` recovers such data from the ciphertexts alone).")
@click.option("--format", "storage", type=LiveChoice(lambda: list(STORAGES)), default="wds", show_default=True,
              help="; ".join(f"{s.name}: {s.summary}" for s in STORAGES.values()) + ".")
@click.option("--block-size", type=click.IntRange(min=1), help="Block side for the block-wise methods (le, ele, etc, bsm). [default: 4]")
@click.option("--size", type=click.IntRange(min=1), help="Resize the shorter side to N and centre-crop N x N.")
@click.option("--shard-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Samples per shard, at most.")
@click.option("--shard-bytes", type=ByteSize(), default="256MiB", show_default=True,
              help="Bytes per shard, at most (a shard closes at --shard-size samples or this, whichever comes first); "
                   "a number with an optional KiB, MiB or GiB.")
@click.option("--resume", is_flag=True, help="Continue the interrupted job at OUT (killed, crashed, a lost node): keep the shards "
              "it finished, each checked, and write the rest, to the bytes an uninterrupted run writes. The same SRC, OUT, "
              "key and options, and SRC unchanged since (its files' sizes and versions, its classes file); refused otherwise.")
@click.option("--workers", type=click.IntRange(min=1), default=default_workers, show_default="CPUs, at most 8",
              help="Decoding processes (with --engine dask and no scheduler: the LocalCluster's); the output is identical for any number.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
              help="local: this machine's processes; dask: a Dask cluster, one task per shard (the same bytes).")
@click.option("--scheduler", metavar="ADDRESS", help="--engine dask: the scheduler, tcp://HOST:PORT. "
              "[default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster on this machine]")
@click.option("--copies", type=click.IntRange(min=1),
              help="Augment in the client: encrypt K shifted and flipped copies of the train split instead of the "
                   "split itself (pptrain then turns its own augmentation off by default).")  # fmt: skip
@click.option("--pad", type=click.IntRange(min=0), help="Largest shift of the --copies, in pixels (border value 128). [default: 4]")
@click.option("--augment-seed", type=int, help="Seeds the draws of the --copies. [default: 0]")
@OVERWRITE
@click.option("--skip-bad", is_flag=True, help="Skip undecodable files (named on stderr) instead of stopping.")
@click.option("--reproduce", metavar="DATASET", help="Image scope: reproduce DATASET (a folder or URL made with this key) byte "
              "for byte from the same SRC, reusing its salt; refused, with nothing written, when SRC is other data.")
@click.option("--salt", hidden=True, callback=lambda ctx, param, value: _salt_removed(value), expose_value=False)
@QUIET
@click.pass_context
def dataset(ctx, src, out, key_path, split_sources, classes_file, image_column, label_column, method, key_scope, storage, block_size,
            size, shard_size, shard_bytes, resume, workers, engine, scheduler, copies, pad, augment_seed, overwrite, skip_bad, reproduce,
            quiet):  # fmt: skip
    """Encrypt the dataset in SRC into shards under OUT (a folder, or a URL: s3://, gs://).

    SRC is an ImageFolder (class folders, or train/ test/ val/ of class folders), a CIFAR-10
    or CIFAR-100 python folder, MNIST-style IDX files, webdataset shards (*.tar) or parquet
    files; a folder, a URL prefix (s3://, gs://) or a brace pattern
    (s3://bucket/train-{000000..001023}.tar); '-' with --split NAME=SRC for each split."""
    given = ctx.get_parameter_source("key_scope") == ParameterSource.COMMANDLINE  # the default is the library's
    opts = EncryptOptions(
        method=method, params={} if block_size is None else {"block_size": block_size}, scope=key_scope if given else None,
        storage=storage, size=size, shard_size=shard_size, shard_bytes=shard_bytes, workers=workers, skip_bad=skip_bad,
        reproduce=reproduce, copies=copies, pad=pad, augment_seed=augment_seed, resume=resume, engine=engine, scheduler=scheduler,
        split_sources=split_sources, stream=StreamOptions(classes=classes_file, image_column=image_column, label_column=label_column),
    )  # fmt: skip
    if opts.key_scope == "dataset" and cipher_class(method).needs_key:
        click.echo(f"warning: {DATASET_SCOPE_WARNING}", err=True)
    result = encrypt_dataset(src, out, _key(key_path, reproduce), opts, overwrite, progress_bars(quiet))
    for warning in result.warnings:
        click.echo(f"warning: {without_credentials(warning)}", err=True)
    for name, reason in result.skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    if not quiet:
        m = result.manifest
        counts = ", ".join(f"{s.count} {name}" for name, s in m.splits.items())
        key = f", key {m.cipher.key_id} ({m.cipher.key_scope} scope)" if m.cipher.key_id else ""
        copied = f" ({m.augment.copies} augmented copies of the {m.augment.split} split)" if m.augment is not None else ""
        shards = sum(len(s.shards) for s in m.splits.values())
        kept = f"; resumed: {result.kept} of {shards} shards kept, {shards - result.kept} written" if resume else ""
        click.echo(f"{shown_url(out)}: {counts} images{copied} of {m.width}x{m.height}x{m.channels}, {m.cipher.method}{key}, "
                   f"{m.storage}, dataset {m.dataset_id}{kept}")


@cli.command()
@click.argument("out", type=click.Path())
@click.argument("url")
@OVERWRITE
@QUIET
def push(out, url, overwrite, quiet):
    """Copy dataset OUT to URL (s3://bucket/prefix, gs://...), every file checked against its
    recorded hash, manifest.json last."""
    _copied(push_dataset(out, url, overwrite, progress_bars(quiet)), url, quiet)


@cli.command()
@click.argument("url")
@click.argument("out", type=click.Path())
@OVERWRITE
@QUIET
def pull(url, out, overwrite, quiet):
    """Copy the dataset at URL (s3://, gs://, https://) into folder OUT, every file checked
    against its recorded hash; OUT appears whole."""
    _copied(pull_dataset(url, out, overwrite, progress_bars(quiet)), out, quiet)


def _copied(ds, to: str, quiet: bool) -> None:
    if not quiet:
        files = ds.manifest.all_files()
        click.echo(f"{shown_url(to)}: {len(files) + 1} files, {sum(f.bytes for f in files)} bytes copied from {ds.loc.shown()}")


@cli.command()
@click.argument("out", type=click.Path())
@click.argument("dest", type=click.Path())
@KEY
@OVERWRITE
@QUIET
@DATASET_ID
def decrypt(out, dest, key_path, overwrite, quiet, dataset_id):
    """Decrypt dataset OUT into DEST/<split>/<class>/<sample key>.png, after checking the key
    and the manifest's MAC."""
    n, warnings = decrypt_dataset(out, dest, _key(key_path, out), overwrite, progress_bars(quiet), dataset_id)
    _warn(warnings)
    if not quiet:
        click.echo(f"{dest}: {n} images decrypted")


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--key", "key_path", metavar="KEYFILE", help="Also check the manifest's MAC: that it is the one ppencrypt wrote with this key.")
@QUIET
@DATASET_ID
def verify(out, key_path, quiet, dataset_id):
    """Recompute the checksums and counts of dataset OUT; with --key, authenticate it."""
    report = verify_dataset(out, progress_bars(quiet), _key(key_path, out), dataset_id)
    _warn(report.warnings)
    if not quiet:
        how = "authenticated with the key" if report.authenticated else "integrity only: pass --key to authenticate the manifest"
        click.echo(f"{shown_url(out)}: OK ({report.files} files, {report.samples} samples, {report.bytes} bytes; {how})")


@cli.command()
@click.argument("out", type=click.Path())
def inspect(out):
    """Summarise the manifest of dataset OUT."""
    click.echo(summary(open_dataset(out)), nl=False)


@cli.command()
@click.argument("out", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@KEY
@click.option("-n", "count", type=click.IntRange(min=1), default=16, show_default=True, help="Samples to show.")
@click.option("--split", help="Split to show (default: the first).")
@DATASET_ID
@click.option("--attack", is_flag=True, help=f"Also show what the learned attack (audit --learned) reconstructs of each sample, "
              f"trained here on public images (needs torch: {EXTRA}).")
@click.option("--public", type=click.Path(), metavar="SRC2", help="--attack: the attacker's images, of the same domain. "
              "[default, with --key: the dataset's other splits, decrypted]")
@click.option("--public-n", "public_count", type=click.IntRange(min=1), default=SHOWN.public_count, show_default=True,
              help="--attack: public images the attacker trains on.")
@click.option("--train-steps", type=click.IntRange(min=1), default=SHOWN.train_steps, show_default=True,
              help="--attack: the attacker's training steps (batches of 32; ppencrypt audit's default is 1000).")
@click.option("--seed", type=int, default=SHOWN.seed, show_default=True, help="--attack: the attacker's keys, initial weights and batches.")
@click.pass_context
def preview(ctx, out, output, key_path, count, split, dataset_id, attack, public, public_count, train_steps, seed):
    """Write a picture of encrypted samples; with --key, their decryptions beside them; with
    --attack, the learned attack's reconstructions too."""
    tuned = [o for p, o in ATTACK_OPTIONS.items() if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
    if tuned and not attack:
        raise click.BadParameter(f"{tuned[0]} belongs to --attack", param_hint=tuned[0])
    how = ShownAttack(public=public, public_count=public_count, train_steps=train_steps, seed=seed) if attack else None
    shown, warnings = make_preview(out, output, _key(key_path, out), count, split, dataset_id, how, progress_bars())
    _warn(warnings)
    columns = COLUMNS[key_path is not None, attack]
    click.echo(f"{output}: {shown} samples" + (f" ({' | '.join(columns)})" if len(columns) > 1 else ""))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@KEY
@click.option("--like", required=True, type=click.Path(), help="Dataset whose encryption to copy.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the encrypted PNGs.")
@OVERWRITE
@click.option("--trust-manifest", is_flag=True, help="Accept a version 1 manifest, which has no MAC to check (re-encrypting is safer).")
@click.option("--shared-mask", is_flag=True, help="Accept a dataset whose queries would share a mask with other images "
              "(dataset scope, or a block-wise method): refused otherwise.")
@DATASET_ID
def image(images, key_path, like, out_dir, overwrite, trust_manifest, shared_mask, dataset_id):
    """Encrypt query IMAGES as dataset LIKE was (its manifest authenticated by the key), into
    numbered PNGs in a folder."""
    queries, warnings, how = encrypt_queries(list(images), like, out_dir, _key(key_path, like), overwrite, trust_manifest, shared_mask,
                                             dataset_id)  # fmt: skip
    _warn(warnings)
    click.echo(f"encrypted like {like}: {how}", err=True)
    for q in queries:
        click.echo(f"{q.source}\t{q.output}")


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--plain", "src", required=True, type=click.Path(), metavar="SRC",
              help="The plain source dataset OUT was made from (same layout and order), to score with.")
@click.option("--split", default="test", show_default=True, help="Split to audit.")
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True, help="Images to score.")
@click.option("-k", "--known", type=click.IntRange(min=1), default=1, show_default=True,
              help="Plain/encrypted pairs the known-plaintext attacker knows (the split's first k, not scored).")
@click.option("-o", "--output", default="report", show_default=True, type=click.Path(),
              help="Writes OUTPUT.json and OUTPUT.png (plain images: keep it private).")
@click.option("--learned", is_flag=True,
              help=f"Also train the learned attacks and score every attack's recognition accuracy (needs torch: {EXTRA}).")
@click.option("--public", type=click.Path(), metavar="SRC2",
              help="The learned attacker's own images, of the same domain. [default: SRC's splits other than --split]")
@click.option("--public-n", "public_count", type=click.IntRange(min=1), default=AUDIT.public_count, show_default=True,
              help="Public images the learned attacker trains on.")
@click.option("--train-steps", type=click.IntRange(min=1), default=AUDIT.train_steps, show_default=True,
              help="Training steps of each learned model (batches of 32).")
@click.option("--train-seconds", type=click.FloatRange(min=0, min_open=True), default=AUDIT.train_seconds, show_default=True,
              help="Wall-clock limit of each learned model's training (a model it stops is no longer reproducible).")
@click.option("--seed", type=int, default=AUDIT.seed, show_default=True,
              help="The learned attacker's keys, initial weights and batches.")
@click.option("--key", "key_path", metavar="KEYFILE", help="Authenticate the manifest first (its MAC and dataset id), so the "
              "method, scope and key space reported are the ones ppencrypt wrote; without it the report says it is unauthenticated. "
              "The attacks never use the key.")  # fmt: skip
@DATASET_ID
def audit(out, src, split, count, known, output, learned, public, public_count, train_steps, train_seconds, seed, key_path, dataset_id):
    """Measure what dataset OUT gives away: attack it as its server could, score the
    reconstructions against the plain images of SRC (PSNR, SSIM; with --learned, also
    recognition accuracy; docs/privacy.md). No attack uses the key; --key only authenticates
    the manifest, and the report writes none."""
    opts = AuditOptions(split=split, count=count, known=known, learned=learned, public=public, public_count=public_count,
                        train_steps=train_steps, train_seconds=train_seconds, seed=seed)  # fmt: skip
    report = run_audit(out, src, opts, progress_bars(), _key(key_path, out), dataset_id)
    _warn(report.warnings)
    click.echo(table(report), nl=False)
    for path in write_report(report, output, out):
        click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    run_command(cli, argv, "ppencrypt")


if __name__ == "__main__":
    sys.exit(main())
