"""The rows of [P]'s Tables 2 and 3, and ours beyond them, with [P]'s numbers.

[P]'s numbers are CIFAR-10 test accuracy (%), ResNet-18, 300 epochs (docs/paper.md). Each
row is one training run; Table 3's "in cloud" column is Table 2's run of the same method, so
16 runs fill both tables and the rows beyond [P] (a key per image, the key-invariant
adaptation network, an augmentation schedule).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Row:
    id: str
    label: str  # the row as [P]'s table names it
    method: str  # ppencrypt --method
    adapt: str  # pptrain --adapt
    scope: str = "dataset"  # ppencrypt --key-scope
    where: str = "cloud"  # where the augmentation runs: cloud (pptrain, on ciphertext) or client (plain, before encryption)
    paper: float | None = None  # [P]'s accuracy, None where [P] has no such row
    later: bool = False  # augmentation from a later epoch (pptrain --augment-from; reproduce.augment_from)

    @property
    def dataset(self) -> str:
        """The encrypted dataset the row trains on; rows that differ only in the model share it."""
        name = "plain" if self.method == "plain" else f"{self.method}-{self.scope}"
        return f"{name}-client" if self.where == "client" else name


ROWS = (
    Row(id="plain", label="plain images", method="plain", adapt="none", paper=92.98),
    Row(id="np", label="step 2 (NP), no adaptation network", method="np", adapt="none", paper=85.15),
    Row(id="np-adapt", label="step 2 (NP), with adaptation network", method="np", adapt="pixel", paper=86.99),
    Row(id="pe", label="steps 2+3 (NP + colour shuffle), no adaptation", method="pe", adapt="none", paper=82.51),
    Row(id="pe-adapt", label="steps 2+3 (NP + colour shuffle), with adaptation", method="pe", adapt="pixel", paper=86.16),
    Row(id="le", label="Tanaka's learnable encryption (LE)", method="le", adapt="tanaka", paper=56.41),
    Row(id="etc", label="EtC block scrambling", method="etc", adapt="tanaka", paper=69.03),
    Row(id="ele", label="ELE (Madono et al. 2020; not in [P])", method="ele", adapt="tanaka"),
    Row(id="np-client", label="step 2 (NP), no adaptation network", method="np", adapt="none", where="client", paper=92.94),
    Row(id="np-adapt-client", label="step 2 (NP), with adaptation network",
        method="np", adapt="pixel", where="client", paper=90.65),
    Row(id="le-client", label="Tanaka's learnable encryption (LE)",
        method="le", adapt="tanaka", where="client", paper=85.84),
    Row(id="pe-adapt-image", label="steps 2+3 (pe), a key per image, with adaptation",
        method="pe", adapt="pixel", scope="image"),
    Row(id="np-adapt-image", label="step 2 (np), a key per image, with adaptation",
        method="np", adapt="pixel", scope="image"),
    Row(id="pe-invariant", label="steps 2+3 (pe), key-invariant adaptation network", method="pe", adapt="invariant"),
    Row(id="pe-invariant-image", label="steps 2+3 (pe), a key per image, key-invariant adaptation network",
        method="pe", adapt="invariant", scope="image"),
    Row(id="np-adapt-later", label="step 2 (np), with adaptation, augmentation from epoch E // 3 + 1",
        method="np", adapt="pixel", later=True),
)
BY_ID = {r.id: r for r in ROWS}
TABLE2 = ("plain", "np", "np-adapt", "pe", "pe-adapt", "le", "etc", "ele")
TABLE3 = (("np-client", "np"), ("np-adapt-client", "np-adapt"), ("le-client", "le"))  # (in client, in cloud)
BEYOND = ("pe-adapt-image", "np-adapt-image", "pe-invariant", "pe-invariant-image", "np-adapt-later")
# [P]'s Table 2 also has Gaata & Hantoosh's chaotic-map + RC4 pixel cipher (58.59 %); no issue asks for it.
NOT_IMPLEMENTED = (("pixel-based cipher of Gaata & Hantoosh (chaotic map + RC4)", 58.59),)


def select(ids: list[str] | None) -> tuple[Row, ...]:
    """The rows named by ``ids`` (all when None), in table order; unknown ids raise KeyError."""
    if not ids:
        return ROWS
    missing = [i for i in ids if i not in BY_ID]
    if missing:
        raise KeyError(missing[0])
    return tuple(r for r in ROWS if r.id in set(ids))
