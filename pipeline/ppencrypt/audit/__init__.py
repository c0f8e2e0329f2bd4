"""The privacy audit: how much of the picture each method and key scope gives away.

    report = run_audit("out/cifar", "data/cifar-10-batches-py", AuditOptions(split="test", count=1000))
    print(table(report)); write_report(report, "report", "out/cifar")

Modules, one concept each: attacks (what an attacker sees; the registry; identity, fr-basic),
candidates (the pixel cipher's 48 / 2^C encodings of a pixel), greedy (fr-advanced, fr-shared),
jigsaw (block puzzles reassembled per image), variants (the global transforms a viewer settles),
known, known_pixel, known_block (known-plaintext key recovery), metrics (PSNR, SSIM), keyspace,
report (table, report.json, report.png), audit (reading the data, running, scoring). With
``--learned`` (torch, imported by extra only then): public (the attacker's own images and
training budget), attacker (its own keys and encryption), nets (the networks, the training loop),
learned (the learned inverter, learned-shared), blockfeatures (the attacker on bsm's key-invariant block
features, learned-features), recognition (the recognition score), shown (the
learned inverter on the samples of ``ppencrypt preview --attack``).
docs/privacy.md has the results.

Importing this package registers every built-in attack, in the order the audit runs them.
"""

from . import greedy, jigsaw, known, learned  # noqa: F401  (registering the attacks; learned imports torch only when run)
from . import blockfeatures  # noqa: F401, I001  (after learned: the table's order; torch only when run)
from .audit import AuditOptions, run_audit
from .report import AuditReport, report_paths, table, write_report

__all__ = ["AuditOptions", "AuditReport", "report_paths", "run_audit", "table", "write_report"]
