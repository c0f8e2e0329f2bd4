"""README.md documents the command-line interfaces, all of them and nothing else (in the spirit
of sqlite-utils' tests/test_docs.py). The CLIs are read live (click's ``cli.commands``,
``command.params``), so a command or option added, renamed or removed in the code fails here
until README.md follows.

The rule, on README.md's "## Commands" section, split at its "### " headings:

1. Commands. A heading whose backticked text starts with a CLI's name is a command section:
   ``### `ppencrypt keygen PATH` `` documents ``ppencrypt keygen``. The word after the CLI's
   name is resolved the way the CLI resolves it, so ``### `pptrain OUT` `` is the section of
   ``pptrain train`` (``pptrain OUT`` is short for ``pptrain train OUT``) and, since it names
   no command explicitly, covers the whole CLI. Every heading must name a command. Every
   command needs a heading of its own, or a usage line (an indented code line) invoking it in
   the section covering its CLI (``pptrain eval ...``). That section is the command's home.
2. Options. Every option of every command appears in the command's home: in the heading, a
   table, a paragraph or a usage line. Each long name (``--key``) is required; an option with
   no long name, by its short name (``-n``).
3. Nothing stale. Every option on a usage line (the heading's backticked usage included) is an
   option of the command that line invokes. Every other ``--option`` (and backticked ``-x``)
   in a command section is an option of a command whose home that section is. Outside
   "## Commands", every ``--option`` is an option of some command of either CLI.

Out of scope: sections under "## Commands" whose heading names no CLI ("Batch jobs": make
variables), code lines that invoke other programs, other programs' options before ``-m
pptrain`` on a launcher's line (torchrun's ``--nproc_per_node``), and ``--help``,
``-h``, ``--version``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from ppencrypt.cli import cli as ppencrypt_cli
from pptrain.cli import cli as pptrain_cli

README = Path(__file__).resolve().parents[1] / "README.md"
CLIS: dict[str, click.Group] = {"ppencrypt": ppencrypt_cli, "pptrain": pptrain_cli}
MODULES = {"ppencrypt": "ppencrypt", "pptrain": "pptrain", "ppencrypt.cli": "ppencrypt", "pptrain.cli": "pptrain"}  # python -m / torchrun -m
ALWAYS = {"--help", "-h", "--version"}

LONG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
SHORT = re.compile(r"(?<![\w-])-[A-Za-z](?![\w-])")
BACKTICKED = re.compile(r"`([^`\n]+)`")
OPTION_WORD = re.compile(r"^[\[(]*(--?[A-Za-z][\w-]*)")


def mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


# -- the CLIs ---------------------------------------------------------------------------------


def options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def option_names(command: click.Command) -> set[str]:
    return {n for p in options(command) for n in (*p.opts, *p.secondary_opts)} - ALWAYS


def required_names(option: click.Option) -> list[str]:
    """The names README.md must show: every long name, or the short ones if it has none."""
    names = [n for n in (*option.opts, *option.secondary_opts) if n not in ALWAYS]
    return [n for n in names if n.startswith("--")] or names


def all_commands() -> list[tuple[str, str]]:
    return [(prog, name) for prog, group in CLIS.items() for name in group.commands]


def resolve(prog: str, word: str | None) -> tuple[str | None, bool]:
    """The command `prog word ...` runs, and whether `word` named it explicitly."""
    group = CLIS[prog]
    if word in group.commands:
        return word, True
    try:
        ctx = group.make_context(prog, [word] if word else [], resilient_parsing=True)
    except click.ClickException:
        return None, False
    rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    return (rest[0] if rest and rest[0] in group.commands else None), False


# -- README.md --------------------------------------------------------------------------------


@dataclass
class Usage:
    """A command line invoking one of the CLIs: a usage line, or a heading's backticked text."""

    line: int
    prog: str
    word: str | None  # the first word after the CLI's name
    words: list[str]  # the words after the CLI's name, comment dropped

    @property
    def option_words(self) -> list[str]:
        return [m.group(1).split("=")[0] for w in self.words if (m := OPTION_WORD.match(w))]


@dataclass
class Section:
    title: str
    line: int  # of the heading, 1-based
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, text) of the body
    heading_usage: Usage | None = None

    @property
    def prog(self) -> str | None:
        return self.heading_usage.prog if self.heading_usage else None

    @property
    def text(self) -> str:
        return "\n".join([self.title, *(t for _, t in self.lines)])


def invocation(line_no: int, text: str) -> Usage | None:
    """The CLI a command line runs, if it runs one of ours."""
    words = re.split(r"\s#", text, maxsplit=1)[0].split()
    if words and words[0] in CLIS:
        prog, after = words[0], words[1:]
    elif "-m" in words[:-1] and words[words.index("-m") + 1] in MODULES:
        i = words.index("-m")
        prog, after = MODULES[words[i + 1]], words[i + 2 :]
    else:
        return None
    return Usage(line_no, prog, after[0] if after else None, after)


def is_code(text: str) -> bool:
    return text.startswith("    ") or text.startswith("\t")


def split_readme(text: str) -> tuple[list[Section], list[tuple[int, str]]]:
    """The "### " sections of "## Commands", and the lines outside "## Commands" (fenced and
    indented code lines both count as code)."""
    sections: list[Section] = []
    outside: list[tuple[int, str]] = []
    in_commands = in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            line = "    " + line
        elif line.startswith("## "):
            in_commands = line[3:].strip() == "Commands"
            continue
        if not in_commands:
            outside.append((n, line))
        elif line.startswith("### ") and not in_fence:
            title = line[4:].strip()
            m = re.match(r"`([^`]+)`", title)
            sections.append(Section(title, n, heading_usage=invocation(n, m.group(1)) if m else None))
        elif sections:
            sections[-1].lines.append((n, line))
        else:
            outside.append((n, line))
    return sections, outside


def prose_options(text: str) -> list[str]:
    """--options anywhere in prose, -x options inside backticks."""
    found = LONG.findall(text)
    for span in BACKTICKED.findall(text):
        found += SHORT.findall(span)
    return found


def homes(sections: list[Section]) -> tuple[dict[tuple[str, str], list[Section]], list[str]]:
    """Each command's home sections (rule 1), and the headings that name no command."""
    home: dict[tuple[str, str], list[Section]] = {}
    wide: dict[str, list[Section]] = {}  # sections covering a whole CLI
    bad = []
    for s in sections:
        if s.heading_usage is None:
            continue
        u = s.heading_usage
        name, explicit = resolve(u.prog, u.word)
        if name is None:
            bad.append(f"README.md line {s.line}: heading '{s.title}' names no {u.prog} command ({u.word!r})")
            continue
        home.setdefault((u.prog, name), []).append(s)
        if not explicit:
            wide.setdefault(u.prog, []).append(s)
    for prog, group in CLIS.items():
        for name in group.commands:
            if (prog, name) in home:
                continue
            for s in wide.get(prog, []):
                if name in invoked(s, prog):
                    home.setdefault((prog, name), []).append(s)
    return home, bad


def invoked(s: Section, prog: str) -> dict[str, int]:
    """The commands of `prog` that usage lines in section s name explicitly: name -> line."""
    found = {}
    for n, t in s.lines:
        if is_code(t) and (u := invocation(n, t)) and u.prog == prog:
            name, explicit = resolve(prog, u.word)
            if name and explicit:
                found.setdefault(name, n)
    return found


def usage_problems(u: Usage) -> list[str]:
    """Rule 3 on one command line: its command exists and takes each of its options."""
    name, _ = resolve(u.prog, u.word)
    if name is None:
        return [f"README.md line {u.line}: `{u.prog} {u.word}` is no {u.prog} command"]
    valid = option_names(CLIS[u.prog].commands[name]) | ALWAYS
    bad = [o for o in u.option_words if o not in valid]
    return [f"README.md line {u.line}: {o} is not an option of {u.prog} {name}" for o in bad]


def undocumented(readme_text: str) -> list[str]:
    """Every way README.md and the CLIs disagree, one line each; empty when they agree."""
    sections, outside = split_readme(readme_text)
    home, problems = homes(sections)
    if not any(s.prog for s in sections):
        problems.append("README.md has no '## Commands' section with '### `ppencrypt ...`' headings")

    # 1 + 2: every command has a home, and every option of it is there.
    for prog, group in CLIS.items():
        for name, command in group.commands.items():
            where = home.get((prog, name))
            if not where:
                problems.append(
                    f"{prog} {name}: not in README.md (no '### `{prog} {name} ...`' heading under "
                    f"'## Commands', nor a `{prog} {name}` usage line in a section covering all of {prog})"
                )
                continue
            text = "\n".join(s.text for s in where)
            for option in options(command):
                for opt in required_names(option):
                    if not mentions(text, opt):
                        titles = " / ".join(f"'{s.title}'" for s in where)
                        problems.append(f"{prog} {name}: option {opt} is not in README.md (section {titles})")

    # 3: every option README.md names exists where it says.
    everything = {n for prog, group in CLIS.items() for c in group.commands.values() for n in option_names(c)}
    for s in sections:
        if s.prog is None:
            continue  # Batch jobs: make variables
        prog = s.prog
        covers = sorted(name for (p, name), where in home.items() if p == prog and any(w is s for w in where))
        allowed = set().union(*(option_names(CLIS[prog].commands[n]) for n in covers)) if covers else set()
        if covers:  # else the heading names no command: reported above
            problems += usage_problems(s.heading_usage)
        prose = [BACKTICKED.sub("", s.title, count=1)]
        for n, t in s.lines:
            if is_code(t):
                if u := invocation(n, t):
                    problems += usage_problems(u)
            else:
                prose.append(t)  # code lines of other programs are out of scope
        for opt in prose_options("\n".join(prose)):
            if opt not in allowed | ALWAYS:
                which = " or ".join(f"{prog} {n}" for n in covers) or prog
                problems.append(f"README.md section '{s.title}': {opt} is not an option of {which}")
    for n, t in outside:
        if is_code(t) and (u := invocation(n, t)):
            problems += usage_problems(u)
        elif not is_code(t):
            for opt in LONG.findall(t):
                if opt not in everything | ALWAYS:
                    problems.append(f"README.md line {n}: {opt} is not an option of any ppencrypt or pptrain command")
    return list(dict.fromkeys(problems))


# -- the tests --------------------------------------------------------------------------------


def test_readme_documents_every_command_and_option():
    problems = undocumented(README.read_text(encoding="utf-8"))
    assert not problems, "README.md and the CLIs disagree:\n  " + "\n  ".join(problems)


def _without_lines(text: str, drop: set[int]) -> str:
    return "\n".join(t for n, t in enumerate(text.splitlines(), 1) if n not in drop) + "\n"


def _replace_lines(text: str, lines: dict[int, str]) -> str:
    return "\n".join(lines.get(n, t) for n, t in enumerate(text.splitlines(), 1)) + "\n"


OPTIONS = [(prog, name, opt) for prog, name in all_commands()
           for o in options(CLIS[prog].commands[name]) for opt in required_names(o)]  # fmt: skip


@pytest.mark.parametrize(("prog", "name", "opt"), OPTIONS, ids=[f"{p} {c} {o}" for p, c, o in OPTIONS])
def test_an_option_missing_from_its_section_is_reported(prog, name, opt):
    """Delete every mention of the option from its command's home: the check must name it."""
    text = README.read_text(encoding="utf-8")
    where = homes(split_readme(text)[0])[0].get((prog, name))
    if not where:
        pytest.skip(f"{prog} {name} has no section (test_readme_documents_every_command_and_option says so)")
    home_lines = {n for s in where for n in (s.line, *(m for m, _ in s.lines))}
    pattern = re.compile(rf"(?<![\w-]){re.escape(opt)}(?![\w-])")
    lines = text.splitlines()
    mutated = _replace_lines(text, {n: pattern.sub("", lines[n - 1]) for n in home_lines})
    assert f"{prog} {name}: option {opt} is not in README.md" in "\n".join(undocumented(mutated))


@pytest.mark.parametrize(("prog", "name"), all_commands(), ids=[f"{p} {c}" for p, c in all_commands()])
def test_a_command_missing_from_readme_is_reported(prog, name):
    """Drop the command's heading, or (without one) its usage lines: the check must name it."""
    text = README.read_text(encoding="utf-8")
    sections = split_readme(text)[0]
    own = [s for s in sections if s.heading_usage and resolve(prog, s.heading_usage.word) == (name, True)]
    if own:
        drop = {s.line for s in own}
    else:
        # its usage lines, and a whole-CLI heading that resolves to it (`pptrain OUT` is train)
        mine = [s for s in sections if s.prog == prog]
        drop = {n for s in mine for n, t in s.lines if is_code(t) and (u := invocation(n, t)) and u.prog == prog
                and resolve(prog, u.word)[0] == name}  # fmt: skip
        drop |= {s.line for s in mine if resolve(prog, s.heading_usage.word)[0] == name}
    assert drop, f"{prog} {name} is not in README.md at all"
    assert any(p.startswith(f"{prog} {name}: not in README.md") for p in undocumented(_without_lines(text, drop)))


def _insert_after_heading(text: str, prog: str, line: str) -> str:
    """README.md with `line` added to the body of the first section of `prog`."""
    first = next(s for s in split_readme(text)[0] if s.prog == prog)
    lines = text.splitlines()
    return "\n".join([*lines[: first.line], "", line, *lines[first.line :]]) + "\n"


@pytest.mark.parametrize("prog", list(CLIS))
def test_an_option_that_does_not_exist_is_reported(prog):
    text = README.read_text(encoding="utf-8")
    problems = undocumented(_insert_after_heading(text, prog, "| `--no-such-option` | off | gone |"))
    assert any("--no-such-option is not an option of" in p for p in problems), problems
    problems = undocumented(text + "\nSee `--no-such-option`.\n")
    assert any("--no-such-option is not an option of any" in p for p in problems), problems


def test_an_option_of_another_command_is_reported():
    text = README.read_text(encoding="utf-8")
    first = next(s for s in split_readme(text)[0] if s.prog == "ppencrypt")
    name, _ = resolve("ppencrypt", first.heading_usage.word)
    own = option_names(ppencrypt_cli.commands[name])
    foreign = next(o for cmd in ppencrypt_cli.commands.values() for o in sorted(option_names(cmd) - own) if o.startswith("--"))
    problems = undocumented(_insert_after_heading(text, "ppencrypt", f"    ppencrypt {name} X {foreign} Y"))
    assert any(f"{foreign} is not an option of ppencrypt {name}" in p for p in problems), problems
    problems = undocumented(_insert_after_heading(text, "ppencrypt", f"Also `{foreign}`."))
    assert any(f"{foreign} is not an option of ppencrypt {name}" in p for p in problems), problems


def test_a_command_that_does_not_exist_is_reported():
    text = README.read_text(encoding="utf-8")
    first = next(s for s in split_readme(text)[0] if s.prog == "ppencrypt")
    word = first.heading_usage.word
    heading = text.splitlines()[first.line - 1]
    renamed = _replace_lines(text, {first.line: heading.replace(f"ppencrypt {word}", "ppencrypt frobnicate", 1)})
    problems = undocumented(renamed)
    assert any("names no ppencrypt command ('frobnicate')" in p for p in problems), problems
    assert any(p.startswith(f"ppencrypt {word}: not in README.md") for p in problems), problems
    problems = undocumented(_insert_after_heading(text, "ppencrypt", "    ppencrypt frobnicate out/fm"))
    assert any("`ppencrypt frobnicate` is no ppencrypt command" in p for p in problems), problems


def test_other_programs_and_out_of_scope_sections_are_left_alone():
    text = README.read_text(encoding="utf-8")
    for extra in ("    torchrun --nnodes=2 --nproc_per_node=8 -m pptrain out/fm",
                  "    chmod --recursive go-rwx keys/"):  # fmt: skip
        assert undocumented(_insert_after_heading(text, "pptrain", extra)) == undocumented(text)
    problems = undocumented("## Commands\n\n### Batch jobs\n\n    make x --flag=1\n\nWith `--flag`.\n")
    assert problems and not any("--flag" in p for p in problems), problems


@pytest.mark.parametrize("prog", list(CLIS))
def test_a_new_option_or_command_in_the_code_is_reported(prog, monkeypatch):
    """What another engineer's change looks like: the CLI grows an option and a command."""
    group = CLIS[prog]
    name, command = next(iter(group.commands.items()))
    monkeypatch.setattr(command, "params", [*command.params, click.Option(["--brand-new", "-B"], is_flag=True)])
    monkeypatch.setitem(group.commands, "brand-new-command", click.Command("brand-new-command"))
    problems = undocumented(README.read_text(encoding="utf-8"))
    assert f"{prog} {name}: option --brand-new is not in README.md" in "\n".join(problems), problems
    assert any(p.startswith(f"{prog} brand-new-command: not in README.md") for p in problems), problems
    assert not any("-B" in p for p in problems), problems  # the long name is the one required
