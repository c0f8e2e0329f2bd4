"""The regression guard of ``make bench``: each key ratio the bench scripts wrote (their --json
files) against the value recorded in docs/benchmarks.md ("Recorded ratios") and its goal.

    python bench/guard.py RESULTS...              check them (make bench)
    python bench/guard.py --record RESULTS...     rewrite the record from them (make bench-record)

RESULTS are the scripts' --json files, or folders holding them. A metric has regressed when it is
more than --tolerance (25 %) worse than recorded, in its own direction: a time ratio (lower is
better) 25 % higher, a speed ratio (higher is better) 25 % lower. Falling short of the goal is
reported but fails nothing by itself. Full runs and quick runs (--quick, BENCH_QUICK=1) each
have a record of their own. Recorded metrics of a script that did not run are listed, not failed;
a script that ran but no longer reports a recorded metric fails (renamed or dropped: re-record).

Exit status: 0 nothing regressed or went missing; 1 something did; 2 the results or the record
cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ratios import FORMAT, Metric, number

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
MODES = ("full", "quick")
SECTION = "## Recorded ratios"
COLUMNS = ("metric", "recorded", "unit", "better", "goal", "what")


class Unreadable(Exception):
    """Results or a record that cannot be read: exit status 2."""


def begin(mode: str) -> str:
    return f"<!-- recorded-ratios {mode}: written by bench/guard.py --record -->"


def end(mode: str) -> str:
    return f"<!-- /recorded-ratios {mode} -->"


# -- the run's results ------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    scripts: list[dict]  # the --json files, in the order given
    metrics: dict[str, Metric]


def read_results(paths: list[Path]) -> Run:
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    if not files:
        raise Unreadable(f"no results in {', '.join(map(str, paths))}: run the bench scripts with --json PATH (make bench)")
    scripts, metrics = [], {}
    for f in files:
        try:
            data = json.loads(f.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            found = [Metric(**m) for m in data["metrics"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Unreadable(f"{f}: not a bench script's --json file ({e})") from None
        for m in found:
            if m.name in metrics:
                raise Unreadable(f"{f}: {m.name} is reported twice")
            metrics[m.name] = m
        scripts.append(data)
    modes = {"quick" if s["quick"] else "full" for s in scripts}
    if len(modes) > 1:
        raise Unreadable("the results mix full and quick runs: compare one kind at a time")
    return Run(modes.pop(), scripts, metrics)


# -- the record in docs/benchmarks.md ---------------------------------------------------------


@dataclass
class Record:
    header: str  # the paragraph above the table: when, where, under what load
    metrics: dict[str, Metric]


def block(text: str, mode: str) -> tuple[int, int] | None:
    """Where the record of ``mode`` stands in the document: the span from its begin marker to
    the end of its end marker, or None."""
    start = text.find(begin(mode))
    if start < 0:
        return None
    stop = text.find(end(mode), start)
    if stop < 0:
        raise Unreadable(f"the record of the {mode} run has no end marker {end(mode)!r}")
    return start, stop + len(end(mode))


def read_doc(doc: Path) -> str:
    try:
        return doc.read_text()
    except OSError as e:
        raise Unreadable(f"{doc}: {e.strerror}") from None


def read_record(doc: Path, mode: str) -> Record | None:
    text = read_doc(doc)
    span = block(text, mode)
    if span is None:
        return None
    lines = text[span[0] : span[1]].splitlines()[1:-1]
    rows = [line for line in lines if line.startswith("|")]
    header = " ".join(line.strip() for line in lines if line.strip() and not line.startswith("|"))
    if len(rows) < 2:
        raise Unreadable(f"{doc}: the record of the {mode} run has no table")
    names = cells(rows[0])
    missing = {"metric", "recorded", "unit", "better"} - set(names)
    if missing:
        raise Unreadable(f"{doc}: the {mode} record's table lacks the column(s) {', '.join(sorted(missing))}")
    metrics = {}
    for row in rows[2:]:
        cell = dict(zip(names, cells(row)))
        name = cell["metric"].strip("`")
        try:  # the goal column is for the reader: the goal checked is the script's own
            metrics[name] = Metric(name, float(cell["recorded"]), cell["better"], cell.get(COLUMNS[5], ""), unit=cell["unit"])
        except ValueError as e:
            raise Unreadable(f"{doc}: the {mode} record's row {row.strip()!r} cannot be read ({e})") from None
    return Record(header, metrics)


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def render(run: Run) -> str:
    """The record of ``run``: a paragraph saying when, where and under what load, and the table."""
    first = min(run.scripts, key=lambda s: s["started"])
    loads = [x for s in run.scripts for x in s["load"]]
    cores = max(s["cores"] for s in run.scripts)
    scripts = ", ".join(s["script"] for s in run.scripts)
    make = "make bench-record" + (" BENCH_QUICK=1" if run.mode == "quick" else "")
    lines = [
        begin(run.mode),
        f"**{run.mode.capitalize()} run** (`{make}`) of {first['started']}{commit()}; {scripts} "
        f"({sum(s['seconds'] for s in run.scripts):.0f} s). Machine: {first['machine']}. "
        f"Load average (1 minute) at each script's start and end: {min(loads):.1f} to {max(loads):.1f}.",
    ]
    if max(s["load"][0] for s in run.scripts) > cores:
        lines.append(f"**Recorded on a busy machine** (a load average above its {cores} cores): "
                     f"re-record on a quiet one before trusting a REGRESSED.")  # fmt: skip
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in run.metrics.values():
        lines.append(f"| `{m.name}` | {number(m.value)} | {m.unit} | {m.better} | {m.goal_text()} | {m.what} |")
    lines.append(end(run.mode))
    return "\n".join(lines)


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f", commit {head.stdout.strip()}" + (" with uncommitted changes" if dirty.stdout.strip() else "")


def record(run: Run, doc: Path) -> None:
    """Rewrite the record of the run's mode in ``doc``; the rest of the document stays as it is."""
    text = read_doc(doc)
    old = read_record(doc, run.mode)
    new = render(run)
    span = block(text, run.mode)
    later = [b[0] for b in (block(text, m) for m in MODES[MODES.index(run.mode) + 1 :]) if b]  # full before quick
    if span:
        text = text[: span[0]] + new + text[span[1] :]
    elif later:
        text = text[: min(later)] + new + "\n\n" + text[min(later) :]
    elif SECTION in text:  # at the end of the section: before the next heading of its level
        nxt = text.find("\n## ", text.index(SECTION) + len(SECTION))
        head, tail = (text, "") if nxt < 0 else (text[:nxt], text[nxt:])
        text = head.rstrip("\n") + "\n\n" + new + "\n" + tail
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{new}\n"
    doc.write_text(text)
    print(f"recorded {len(run.metrics)} metrics of the {run.mode} run in {doc}")
    dropped = sorted(set(old.metrics) - set(run.metrics)) if old else []
    if dropped:
        print(f"no longer recorded (not in this run): {', '.join(dropped)}")


# -- the comparison ---------------------------------------------------------------------------


def worse_by(m: Metric, recorded: float) -> float:
    """How much worse than recorded ``m`` is, as a fraction of the recorded value (< 0: better)."""
    diff = m.value - recorded if m.better == "lower" else recorded - m.value
    if recorded == 0:  # no fraction of nothing: any step the worse way is a regression
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / abs(recorded)


def check(run: Run, rec: Record, tolerance: float) -> int:
    ran = {s["script"] for s in run.scripts}
    names = [*run.metrics, *(n for n in rec.metrics if n not in run.metrics)]
    width = max(map(len, names)) + 1
    counts = {"REGRESSED": 0, "MISSING": 0, "CHANGED": 0, "short of goal": 0}
    not_run: dict[str, int] = {}
    for name in names:
        m, old = run.metrics.get(name), rec.metrics.get(name)
        head = f"{name + ':':{width}}"
        if m is None:
            script = name.split(".")[0]
            if script not in ran:
                not_run[script] = not_run.get(script, 0) + 1
                continue
            counts["MISSING"] += 1
            print(f"{head} MISSING: recorded, but bench/{script}.py no longer reports it (renamed or dropped? re-record)")
            continue
        line = f"{head} {m.show(m.value)} ({m.better} is better), "
        if old is None:
            line += "not recorded"
            status = ["NEW"]
        elif (old.better, old.unit) != (m.better, m.unit):
            line += f"recorded as {old.unit}, {old.better} is better"
            status = ["CHANGED: the metric's direction or unit differs from the record (re-record)"]
            counts["CHANGED"] += 1
        else:
            w = worse_by(m, old.value)
            change = "unchanged" if abs(w) < 0.005 else f"{abs(w):.0%} {'worse' if w > 0 else 'better'}"
            line += f"recorded {old.show(old.value)} ({change})"
            status = ["REGRESSED" if w > tolerance else "OK"]
            counts["REGRESSED"] += w > tolerance
        if not m.meets_goal():
            status.append("short of goal")
            counts["short of goal"] += 1
        print(f"{line}, goal {m.goal_text()}: {', '.join(status)}")
    if not_run:
        print("not run (their recorded metrics are not checked): " + ", ".join(f"{s} ({n})" for s, n in sorted(not_run.items())))
    failed = counts["REGRESSED"] + counts["MISSING"] + counts["CHANGED"]
    summary = ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n) or "all as recorded"
    print(f"\n{len(run.metrics)} metrics checked, {summary}: {'FAILED' if failed else 'passed'} "
          f"(a regression is more than {tolerance:.0%} worse than recorded)")  # fmt: skip
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    p.add_argument("results", nargs="+", type=Path, help="the bench scripts' --json files, or folders of them")
    p.add_argument("--doc", type=Path, default=DOC, help="where the record is (default: docs/benchmarks.md)")
    p.add_argument("--tolerance", type=float, default=0.25, help="how much worse than recorded is a regression (0.25: 25 %%)")
    p.add_argument("--record", action="store_true", help="rewrite the record of this kind of run (full or quick) instead")
    args = p.parse_args(argv)
    try:
        run = read_results(args.results)
        if args.record:
            record(run, args.doc)
            return 0
        rec = read_record(args.doc, run.mode)
        if rec is None:
            make = "make bench-record" + (" BENCH_QUICK=1" if run.mode == "quick" else "")
            raise Unreadable(f"{args.doc} has no record of a {run.mode} run to compare with: `{make}` writes one")
    except Unreadable as e:
        print(f"bench/guard.py: {e}", file=sys.stderr)
        return 2
    print(f"bench/guard.py: the {run.mode} run against the record in {args.doc}:\n  {rec.header}\n")
    return check(run, rec, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
