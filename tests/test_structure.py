"""The project's structure: the import graph of ppencrypt, pptrain and experiments has no
cycles and keeps the layering the design states, and the installed names are ppencrypt and
pptrain (never the folders `pipeline` and `trainer` that hold them).

The graph is read from the source (ast), not from an import: every ``import`` and ``from ...
import`` of every module under the package folders, at module level or inside a function
(a lazy import is still an arrow), relative imports resolved. ``from pkg import name`` is an
arrow to ``pkg.name`` when that is a module, else to ``pkg``; importing ``pkg.sub`` runs
``pkg/__init__.py`` first, but that is not an arrow (a package's __init__ importing its own
plug-in modules, as ciphers/__init__.py does, is the pattern, not a cycle).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from ppencrypt import __version__

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ppencrypt": ROOT / "pipeline" / "ppencrypt", "pptrain": ROOT / "trainer" / "pptrain", "experiments": ROOT / "experiments"}

# Key and cipher code, which the server must never import: module-name prefixes, so
# "ppencrypt.keys" covers a module keys.py and a package keys/ alike.
KEY_AND_CIPHER_CODE = (
    "ppencrypt.keys",
    "ppencrypt.ciphers",
    "ppencrypt.dataset",
    "ppencrypt.decrypt",
)
# The one part of ppencrypt that may use torch, and only when asked to (``audit --learned``).
TORCH_ALLOWED = "ppencrypt.audit"

# Cycles another change removes, by the two modules that import each other, with why they are
# still here. test_no_import_cycles leaves out the arrows between the two (so a cycle elsewhere
# still fails it); test_known_cycle_is_gone expects the two on no cycle at all: it is an xfail
# until that change is merged, then an XPASS: delete the entry.
@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # absolute dotted name: a module of the project where it names one
    lazy: bool  # inside a function: runs when the function is called, not on import
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}{', in a function' if self.lazy else ''})"


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name (a package by its name)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join((package, *parts))] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path) -> list[Import]:
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")
        if node.level > 1:
            base = base[: -(node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:  # the body never runs
                visit(child, lazy)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target not in known and "." in target and target.partition(".")[0] in PACKAGES:
                    target = target.rpartition(".")[0]  # to the module the dotted name lies in
                found.append(Import(name, target, lazy, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(name, sub if sub in known else base, lazy, node.lineno))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


@cache
def graph() -> dict[str, list[Import]]:
    """Each module's imports of other modules (project modules and outside ones alike)."""
    return {name: list(dict.fromkeys(i for i in imports_of(name, path) if i.target != name)) for name, path in modules().items()}


@dataclass(frozen=True)
class Tangle:
    """Modules that import each other, directly or through one another (a strongly connected
    component of the import graph), and every arrow among them: each lies on a cycle."""

    members: frozenset[str]
    arrows: tuple[Import, ...]

    def __str__(self) -> str:
        return " <-> ".join(sorted(self.members)) + ":\n    " + "\n    ".join(map(str, self.arrows))


def tangles() -> list[Tangle]:
    """Every cycle of the project's import graph, as the tangles they make (Tarjan)."""
    known = modules()
    arrows = {m: [i for i in graph()[m] if i.target in known] for m in known}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def enter(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        work.append((v, iter(arrows[v])))

    for root in sorted(known):  # iterative depth-first search: no recursion limit
        if root in index:
            continue
        work: list = []
        enter(root)
        while work:
            node, edges = work[-1]
            for edge in edges:
                if edge.target not in index:
                    enter(edge.target)
                    break
                if edge.target in stack:
                    low[node] = min(low[node], index[edge.target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set(stack[stack.index(node):])
                    del stack[stack.index(node):]
                    if len(component) > 1:
                        components.append(component)
    return sorted(
        (Tangle(frozenset(c), tuple(i for m in sorted(c) for i in arrows[m] if i.target in c)) for c in components),
        key=lambda t: sorted(t.members),
    )


# --- the import graph -------------------------------------------------------------------------


def test_the_graph_sees_every_package_and_their_imports():
    """The walk itself: it finds the modules, relative and lazy imports, and the arrows between
    the packages (a silent walk that found nothing would pass every test below)."""
    known = modules()
    for package in PACKAGES:
        assert package in known and sum(within(m, package) for m in known) > 3, package
    arrows = {(i.source, i.target, i.lazy) for imports in graph().values() for i in imports}
    assert ("ppencrypt.formats", "ppencrypt.formats.locate", False) in arrows  # from .locate import ...
    assert ("ppencrypt.audit", "ppencrypt.audit.greedy", False) in arrows  # from . import greedy
    assert ("ppencrypt.formats.remote", "ppencrypt.errors", False) in arrows  # from ..errors import ...
    assert ("ppencrypt.audit.extra", "torch", True) in arrows  # inside require_torch
    assert any(s.startswith("pptrain.") and t == "ppencrypt.formats" for s, t, _ in arrows)


def test_no_import_cycles():
    """No module imports, directly or through others, one that imports it back: every cycle
    is listed: the modules that import each other, and the lines that make them."""
    found = tangles()
    assert not found, "modules that import each other:\n  " + "\n  ".join(map(str, found))


def test_ppencrypt_never_imports_pptrain_nor_experiments():
    wrong = [str(i) for m, imports in graph().items() if within(m, "ppencrypt") for i in imports
             if within(i.target, "pptrain") or within(i.target, "experiments")]  # fmt: skip
    assert not wrong, "the client imports the server:\n  " + "\n  ".join(wrong)


def test_torch_only_in_the_learned_audit_and_never_on_import():
    """ppencrypt installs without torch: only ppencrypt.audit names torch, and the modules that
    need it to be imported (its networks, and whatever imports them at module level) lie in
    ppencrypt.audit and are none of the CLI and the packages — ``ppencrypt``, the format layer
    and the audit import without it, and torch arrives with ``--learned``."""
    imports = {m: i for m, i in graph().items() if within(m, "ppencrypt")}
    outside = [str(i) for m, found in imports.items() for i in found if within(i.target, "torch") and not within(m, TORCH_ALLOWED)]
    assert not outside, "torch outside ppencrypt.audit:\n  " + "\n  ".join(outside)
    # the modules that import torch on import, directly or through module-level imports
    needs_torch = {m for m, found in imports.items() if any(within(i.target, "torch") and not i.lazy for i in found)}
    while True:
        more = {m for m, found in imports.items() if any(i.target in needs_torch and not i.lazy for i in found)} - needs_torch
        if not more:
            break
        needs_torch |= more
    assert needs_torch, "no module imports torch: the walk missed ppencrypt.audit's networks"
    entry = {"ppencrypt", "ppencrypt.cli", "ppencrypt.__main__"} | {m for m in imports if modules()[m].name == "__init__.py"}
    assert not needs_torch & entry, f"importing these imports torch: {sorted(needs_torch & entry)}"
    assert all(within(m, TORCH_ALLOWED) for m in needs_torch), sorted(needs_torch)


def test_pptrain_never_imports_key_or_cipher_code():
    """The server reads datasets through ppencrypt.formats only: nothing pptrain imports, at
    any depth, is key or cipher code."""
    known = modules()
    wrong: dict[Import, list[str]] = {}  # each offending arrow, with the shortest way pptrain reaches it
    for start in (m for m in known if within(m, "pptrain")):
        seen, todo = {start: [start]}, [start]
        while todo:
            m = todo.pop(0)
            for i in graph()[m]:
                if any(within(i.target, p) for p in KEY_AND_CIPHER_CODE):
                    if i not in wrong or len(seen[m]) < len(wrong[i]):
                        wrong[i] = seen[m]
                elif i.target in known and i.target not in seen:
                    seen[i.target] = [*seen[m], i.target]
                    todo.append(i.target)
    assert not wrong, "pptrain reaches key or cipher code:\n  " + "\n  ".join(
        f"{i}, reached by {' -> '.join(path)}" for i, path in sorted(wrong.items(), key=lambda w: str(w[0]))
    )


# --- the installed names ----------------------------------------------------------------------


def test_the_dev_environment_runs_both_packages_as_modules():
    r = subprocess.run([sys.executable, "-m", "ppencrypt", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and __version__ in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "pptrain", "--help"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "Usage:" in r.stdout, r.stdout + r.stderr


def test_a_fresh_venv_holds_ppencrypt_and_pptrain_and_no_pipeline_or_trainer(tmp_path):
    """The wheel built from this tree, installed into an empty venv (no dependencies: only the
    names are looked up, nothing is imported)."""
    for tool in ("pip", "setuptools", "venv"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"no {tool} in this interpreter")
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                        "-w", str(wheels), str(_source_copy(tmp_path / "src"))],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"ppencrypt", "pptrain"}, sorted(top)
    assert "ppencrypt/frontier.json" in names  # the measured numbers `ppencrypt dataset --help` shows

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # no PYTHONPATH into the tree
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, env=env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    probe = (
        "import importlib.util as u, json\n"
        "print(json.dumps({n: (s.origin if s else None) for n in ('ppencrypt', 'pptrain', 'pipeline', 'trainer') "
        "for s in [u.find_spec(n)]}))"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, timeout=120, cwd=outside, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    found = json.loads(r.stdout)
    assert found["pipeline"] is None and found["trainer"] is None, found
    for name in ("ppencrypt", "pptrain"):
        assert found[name] and Path(found[name]).resolve().is_relative_to(venv.resolve()), found


def _source_copy(dest: Path) -> Path:
    """What the build reads — pyproject.toml, README.md and the two package folders — copied
    out, so building writes no build/ or .egg-info into the tree."""
    dest.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, dest / f)
    for folder in ("pipeline", "trainer"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return dest
