"""results.json -> the markdown tables: ours next to [P]'s, with the budget, the device, the
wall times and the exact commands. They go into docs/results.md as a section of their own
(:func:`section`), one per (dataset, device kind), so a CPU run and a GPU run sit side by side.
"""

from __future__ import annotations

from .rows import BEYOND, BY_ID, NOT_IMPLEMENTED, TABLE2, TABLE3
from .sections import Section

ANCHOR = "<!-- reproduce:sections -->"  # new sections go after this line (else at the end)
ADAPT = {"none": "none", "pixel": "pixel ([P])", "tanaka": "Tanaka", "invariant": "invariant"}


def tag(record: dict) -> str:
    device = next((r["device"] for r in record["rows"] if r.get("device")), record["config"]["device"])
    return f"{record['source_name'].lower()}-{device.split(':')[0]}"


def _acc(rec: dict | None) -> str:
    if rec is None:
        return "not run"
    if rec["error"]:
        return "failed"
    return f"**{rec['accuracy']:.2f}**"


def _paper(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _wall(rec: dict | None) -> str:
    if rec is None or rec["train_s"] is None:
        return "—"
    return f"{rec['train_s'] + rec['eval_s']:.0f} s"


def budget(record: dict) -> str:
    c = record["config"]
    rows = [r for r in record["rows"] if r.get("train_images")]
    cloud = next((r for r in rows if r["where"] == "cloud"), None)
    test = next((r["test_images"] for r in rows), None)
    device = next((f"{r['device_name']} (`{r['device']}`)" for r in rows), c["device"])
    host = record["host"]
    cores = f", {host['cores']} cores" if host.get("cores") else ""
    if device.startswith("cpu"):
        device = f"CPU, {host['cpu']}{cores}"
    train = f"{cloud['train_images']:,}" if cloud else "?"
    subset = f" (the first {c['train_subset']:,} of the train split)" if c["train_subset"] else " (the full train split)"
    test_subset = f" (the first {c['test_subset']:,})" if c["test_subset"] else ""
    batch = c["batch_size"] or "the recipe's, sized to the split"
    return "\n".join([
        f"- **dataset**: {record['source_name']} (`{c['src']}`): {train} training images{subset}, "
        f"{f'{test:,}' if test is not None else '?'} test images{test_subset}",
        f"- **budget**: {c['epochs']} epochs of the `fast` recipe, batch {batch}, width {c['width']} "
        f"(ResNet-18 is 64), seed {c['seed']}; pad {c['pad']}, block size {c['block_size']}",
        f"- **client augmentation**: `ppencrypt dataset --copies {c['client_copies']}` (augmented copies of the train split, "
        f"encrypted), then {c['epochs']} server epoch(s) with `--augment none`, each one pass over the originals "
        "(same steps and learning-rate curve as the cloud rows)",
        f"- **device**: {device}; Python {record['host']['python']}, torch {record['host']['torch']}",
        f"- **started** {record['started']}; **total wall time** {record['total_s'] / 60:.1f} min "
        f"(preparation {sum(s['seconds'] or 0 for s in record['steps'].values()):.0f} s)",
        f"- **harness command**: `{record.get('invocation') or 'python -m experiments reproduce'}`",
    ])  # fmt: skip


def render(record: dict) -> str:
    done = {r["id"]: r for r in record["rows"]}
    out = [f"### {record['source_name']}, {tag(record).rsplit('-', 1)[1]}, width {record['config']['width']}, "
           f"{record['config']['epochs']} epochs", "", budget(record), ""]  # fmt: skip
    out += ["#### Table 2: augmentation in the cloud (crop + flip on the ciphertext)", "",
            "| row | method ([P]'s name) | adaptation | ours (%) | [P], CIFAR-10 (%) | wall time |", "|---|---|---|---|---|---|"]  # fmt: skip
    for i in TABLE2:
        r = BY_ID[i]
        out.append(f"| `{i}` | {r.label} | {ADAPT[r.adapt]} | {_acc(done.get(i))} | {_paper(r.paper)} | {_wall(done.get(i))} |")
    for label, paper in NOT_IMPLEMENTED:
        out.append(f"| — | {label} | — | not implemented | {_paper(paper)} | — |")
    out += ["", "#### Table 3: augmentation in the client vs in the cloud", "",
            "| method | adaptation | ours, in client (%) | ours, in cloud (%) | [P] in client | [P] in cloud | wall time (client) |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for client, cloud in TABLE3:
        a, b = BY_ID[client], BY_ID[cloud]
        out.append(f"| {a.label} | {ADAPT[a.adapt]} | {_acc(done.get(client))} | {_acc(done.get(cloud))} | "
                   f"{_paper(a.paper)} | {_paper(b.paper)} | {_wall(done.get(client))} |")  # fmt: skip
    out += ["", "#### Beyond [P]: a key per image, the key-invariant network, an augmentation schedule (in the cloud)", "",
            "| row | method | adaptation | ours (%) | wall time |", "|---|---|---|---|---|"]  # fmt: skip
    for i in BEYOND:
        r = BY_ID[i]
        out.append(f"| `{i}` | {r.label} | {ADAPT[r.adapt]} | {_acc(done.get(i))} | {_wall(done.get(i))} |")
    failed = [r for r in record["rows"] if r["error"]]
    if failed:
        out += ["", "Failed rows:", ""] + [f"- `{r['id']}`: {r['error']}" for r in failed]
    out += ["", "#### Commands", "", "Preparation, once (wall time):", "", "```"]
    for s in record["steps"].values():
        note = f"{s['seconds']:.1f} s" if s["seconds"] is not None else s["error"]
        out.append(f"{s['command']}    # {note}")
    out += ["```", "", "Per row, after its dataset's preparation step: train, then evaluate the test split.", "", "```"]
    for r in record["rows"]:
        out += [f"# {r['id']} (dataset {r['dataset']})", r["train_command"], r["eval_command"]]
    out += ["```"]
    return "\n".join(out) + "\n"


def section(record: dict) -> Section:
    """The record's section of docs/results.md: one per dataset and device kind."""
    return Section(f"reproduce:{tag(record)}", anchor=ANCHOR)
