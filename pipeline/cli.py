"""The ``ppencrypt`` command. The only module that knows about exit codes: library errors
(:class:`pipeline.errors.PipelineError`) become one-line messages with exit 1; click reports
usage errors with exit 2."""

from __future__ import annotations

import sys
from typing import Callable

import click

from . import __version__
from .audit import AuditOptions, run_audit, table, write_report
from .audit.extra import EXTRA
from .ciphers import cipher_class, method_names
from .decrypt import decrypt_dataset
from .derive import SCOPES
from .encrypt import EncryptOptions, encrypt_dataset
from .errors import PipelineError
from .formats import STORAGES, open_dataset
from .describe import summary
from .keys import generate_key_file, load_key
from .parallel import default_workers
from .preview import preview as make_preview
from .progress import progress_bars
from .query import encrypt_queries
from .verify import verify_dataset


class LiveChoice(click.Choice):
    """A choice among a registry's current names: a cipher method or a storage registered
    after this module was imported (a plug-in, a test) is accepted too."""

    def __init__(self, names: Callable[[], list[str]]):
        self.names, self.case_sensitive = names, True  # click.Choice would freeze the names

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.names())


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PipelineError as e:
            raise click.ClickException(str(e)) from None
        except OSError as e:  # disk full, permission denied, ...: the input's fault, not ours
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None


def _key(path: str | None):
    return None if path is None else load_key(path)


def _methods_help() -> str:
    return "; ".join(f"{n}: {cipher_class(n).summary}" for n in method_names())


KEY = click.option("--key", "key_path", metavar="KEYFILE", help="Secret key file (from ppencrypt keygen).")
AUDIT = AuditOptions()  # the audit's defaults, stated once
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


@cli.command()
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path())
@KEY
@click.option("--method", type=LiveChoice(method_names), default="pe", show_default=True, help=_methods_help())
@click.option("--key-scope", type=click.Choice(SCOPES), default="dataset", show_default=True,
              help="dataset: one mask shared by every image (the paper); image: a mask per image.")
@click.option("--format", "storage", type=LiveChoice(lambda: list(STORAGES)), default="wds", show_default=True,
              help="; ".join(f"{s.name}: {s.summary}" for s in STORAGES.values()) + ".")
@click.option("--block-size", type=click.IntRange(min=1), help="Block side for the block-wise methods (le, ele, etc). [default: 4]")
@click.option("--size", type=click.IntRange(min=1), help="Resize the shorter side to N and centre-crop N x N.")
@click.option("--shard-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Samples per shard.")
@click.option("--workers", type=click.IntRange(min=1), default=default_workers, show_default="CPUs, at most 8",
              help="Decoding processes; the output is identical for any number.")
@OVERWRITE
@click.option("--skip-bad", is_flag=True, help="Skip undecodable files (named on stderr) instead of stopping.")
@QUIET
def dataset(src, out, key_path, method, key_scope, storage, block_size, size, shard_size, workers, overwrite, skip_bad, quiet):
    """Encrypt the dataset in SRC into shards under OUT.

    SRC is an ImageFolder (class folders, or train/ test/ val/ of class folders), a CIFAR-10
    or CIFAR-100 python folder, or MNIST-style IDX files."""
    params = {}
    if key_scope == "image" and not cipher_class(method).needs_key:
        raise click.BadParameter(f"method {method!r} uses no key, so there is no key per image", param_hint="--key-scope")
    if block_size is not None:
        if "block_size" not in cipher_class(method).defaults:
            raise click.BadParameter(f"method {method!r} is pixel-based and takes no block size", param_hint="--block-size")
        params["block_size"] = block_size
    opts = EncryptOptions(method, params, key_scope, storage, size, shard_size, workers, skip_bad)
    result = encrypt_dataset(src, out, _key(key_path), opts, overwrite, progress_bars(quiet))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for name, reason in result.skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    if not quiet:
        m = result.manifest
        counts = ", ".join(f"{s.count} {name}" for name, s in m.splits.items())
        key = f", key {m.cipher.key_id} ({m.cipher.key_scope} scope)" if m.cipher.key_id else ""
        click.echo(f"{out}: {counts} images of {m.width}x{m.height}x{m.channels}, {m.cipher.method}{key}, {m.storage}")


@cli.command()
@click.argument("out", type=click.Path())
@click.argument("dest", type=click.Path())
@KEY
@OVERWRITE
@QUIET
def decrypt(out, dest, key_path, overwrite, quiet):
    """Decrypt dataset OUT into DEST/<split>/<class>/<sample key>.png."""
    n = decrypt_dataset(out, dest, _key(key_path), key_path, overwrite, progress_bars(quiet))
    if not quiet:
        click.echo(f"{dest}: {n} images decrypted")


@cli.command()
@click.argument("out", type=click.Path())
@QUIET
def verify(out, quiet):
    """Recompute the checksums and counts of dataset OUT."""
    report = verify_dataset(out, progress_bars(quiet))
    if not quiet:
        click.echo(f"{out}: OK ({report.files} files, {report.samples} samples, {report.bytes} bytes)")


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
def preview(out, output, key_path, count, split):
    """Write a picture of encrypted samples; with --key, their decryptions beside them."""
    shown = make_preview(out, output, _key(key_path), count, split, key_path)
    click.echo(f"{output}: {shown} samples" + (" (encrypted | decrypted)" if key_path else ""))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@KEY
@click.option("--like", required=True, type=click.Path(), help="Dataset whose encryption to copy.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the encrypted PNGs.")
@OVERWRITE
def image(images, key_path, like, out_dir, overwrite):
    """Encrypt query IMAGES as dataset LIKE was, into numbered PNGs in a folder."""
    for q in encrypt_queries(list(images), like, out_dir, _key(key_path), key_path, overwrite):
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
def audit(out, src, split, count, known, output, learned, public, public_count, train_steps, train_seconds, seed):
    """Measure what dataset OUT gives away: attack it as its server could, score the
    reconstructions against the plain images of SRC (PSNR, SSIM; with --learned, also
    recognition accuracy; docs/privacy.md). Takes no key and writes none."""
    opts = AuditOptions(split=split, count=count, known=known, learned=learned, public=public, public_count=public_count,
                        train_steps=train_steps, train_seconds=train_seconds, seed=seed)  # fmt: skip
    report = run_audit(out, src, opts, progress_bars())
    click.echo(table(report), nl=False)
    for path in write_report(report, output, out):
        click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="ppencrypt")


if __name__ == "__main__":
    sys.exit(main())
