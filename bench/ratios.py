"""The key ratios a bench script reports, in the form bench/guard.py reads.

A ratio is ours against the baseline measured in the same run (a time ratio, or a speed ratio),
so it carries over between runs on one machine far better than seconds do. Each has a name
(``<script>.<metric>``), the direction that is better — ``lower`` for a share of the baseline's
time, ``higher`` for a multiple of its speed — and the project's goal where it has one.

    ratios = Ratios(__file__, args)        # args from bench_args(): --quick and --json PATH
    ratios.add("pe_dataset_speed", copy / secs, "higher", "pe, dataset key: speed / x.copy()'s", goal=0.2)
    ratios.report()                        # prints them; writes --json PATH

Only the standard library: bench/guard.py imports this module without numpy or torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BETTER = ("higher", "lower")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FORMAT = 1  # the version of the --json file


@dataclass(frozen=True)
class Metric:
    name: str  # <script>.<metric>
    value: float
    better: str  # "higher" or "lower"
    what: str  # what is divided by what
    goal: float | None = None
    unit: str = "x"  # "x" for a ratio; a few metrics have no baseline to divide by ("s", "MiB")

    def __post_init__(self):
        if self.better not in BETTER:
            raise ValueError(f"{self.name}: better must be one of {BETTER}, not {self.better!r}")

    def meets_goal(self) -> bool:
        return self.goal is None or (self.value >= self.goal if self.better == "higher" else self.value <= self.goal)

    def goal_text(self) -> str:
        return "none" if self.goal is None else f"{'>=' if self.better == 'higher' else '<='} {self.show(self.goal)}"

    def show(self, v: float) -> str:
        return f"{number(v)}{self.unit}" if self.unit == "x" else f"{number(v)} {self.unit}"


def number(v: float) -> str:
    """Four significant digits, never in e-notation for the sizes a ratio has."""
    return f"{float(f'{v:.4g}'):g}"


def bench_args(parser: argparse.ArgumentParser, quick: dict) -> argparse.Namespace:
    """A bench script's arguments plus --quick (the smaller sizes ``quick`` sets, for
    ``make bench BENCH_QUICK=1``; an option given explicitly still wins) and --json PATH."""
    sizes = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items())
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes ({sizes}); checked against the quick record")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the key ratios to PATH for bench/guard.py")
    if parser.parse_known_args()[0].quick:
        parser.set_defaults(**quick)
    return parser.parse_args()


class Ratios:
    """The key ratios of one run of one bench script."""

    def __init__(self, script_file: str, args: argparse.Namespace):
        self.script = Path(script_file).stem
        self.args = args
        self.metrics: list[Metric] = []
        self.started = time.time()
        self.load_start = os.getloadavg()[0]

    def add(self, name: str, value: float, better: str, what: str, goal: float | None = None, unit: str = "x") -> None:
        if not NAME.match(name) or any(m.name == f"{self.script}.{name}" for m in self.metrics):
            raise ValueError(f"{name!r}: a metric needs a new lower-case name (letters, digits, _)")
        if not math.isfinite(value):
            raise ValueError(f"{name}: {value} is not a number to compare")
        if "|" in what or "\n" in what:
            raise ValueError(f"{what!r}: a description is one line without '|' (a cell of docs/benchmarks.md's table)")
        self.metrics.append(Metric(f"{self.script}.{name}", float(value), better, what, goal, unit))

    def report(self) -> None:
        mode = "quick" if self.args.quick else "full"
        print(f"\nkey ratios ({mode} run; `make bench` checks them against docs/benchmarks.md):")
        width = max(len(m.name) for m in self.metrics) + 1
        for m in self.metrics:
            print(f"  {m.name + ':':{width}} {m.show(m.value)} ({m.better} is better; goal {m.goal_text()}) {m.what}")
        if self.args.json:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            self.args.json.write_text(json.dumps(self.record(), indent=1) + "\n")

    def record(self) -> dict:
        from common import machine  # numpy's version is part of the machine's name

        return {
            "format": FORMAT,
            "script": self.script,
            "quick": bool(self.args.quick),
            "machine": machine(),
            "cores": len(os.sched_getaffinity(0)),
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "load": [round(self.load_start, 2), round(os.getloadavg()[0], 2)],  # 1-minute load average, start and end
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items() if k != "json"},
            "metrics": [asdict(m) for m in self.metrics],
        }
