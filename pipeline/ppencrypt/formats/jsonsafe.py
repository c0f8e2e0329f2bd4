"""JSON the server may have written: the one parser for every such file (manifest.json, zarr.json,
pptrain's config.json), strict where Python's json module is lenient.

Python's json accepts ``NaN`` and ``Infinity``, turns ``1e400`` into ``inf``, keeps a lone
surrogate (``"\\ud800"``) as a str that cannot be encoded, and recurses once per level of
nesting. Each of those parsed, then crashed a later step (the manifest's canonical form, a
print, a recursive walk) with a traceback. :func:`load_json` refuses them all while parsing,
as one typed error naming the file:

* nesting deeper than MAX_DEPTH, found by a linear scan of the text before the parser runs;
* numbers that are not finite (``NaN``, ``Infinity``, a literal beyond a float's range);
* strings (keys too) holding a lone surrogate: they are not Unicode and cannot become UTF-8.

Callers pass text already bounded in size (manifest.MAX_BYTES), or have :func:`read_json_file`
read the file bounded (files.read_text) and parse it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

from .files import read_text

MAX_DEPTH = 32  # levels of [ and {: what ppencrypt and pptrain write stays under 10

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class _Refused(ValueError):
    """What is wrong with the text, in a few words (raised from the parser's hooks)."""


def depth(text: str) -> int:
    """How deeply the brackets of ``text`` nest outside its strings (without parsing it)."""
    # Escaped backslashes, then escaped quotes, gone: every quote left opens or closes a string,
    # so the text outside strings is every other piece between quotes.
    outside = "".join(text.replace("\\\\", "").replace('\\"', "").split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def load_json(text: str, shown: str, error: type[Exception], constants: bool = False):
    """The JSON value of ``text`` (read from the file ``shown``), or ``error`` naming the file
    and what is wrong, in one line: ``<shown>: not valid JSON (<why>)``. With ``constants``,
    ``NaN``, ``Infinity`` and ``-Infinity`` are read as floats, for the one file that holds them
    by design: pptrain's metrics.jsonl, where a run that diverged logs a NaN loss (a literal
    beyond a float's range is still refused)."""

    def refuse(why: str) -> Exception:
        return error(f"{shown}: not valid JSON ({why})")

    if _SURROGATE.search(text):
        raise refuse("a lone surrogate, which is not Unicode")
    levels = depth(text)
    if levels > MAX_DEPTH:
        raise refuse(f"nested {levels} levels deep, more than {MAX_DEPTH}")
    try:
        doc = json.loads(text, parse_constant=float if constants else _no_constant, parse_float=_finite)
    except json.JSONDecodeError as e:
        raise refuse(f"{e.msg} at line {e.lineno}") from None
    except _Refused as e:
        raise refuse(str(e)) from None
    except (ValueError, RecursionError):  # an integer of more digits than Python converts, say
        raise refuse("a number out of range") from None
    if _ESCAPED_SURROGATE.search(text) and _holds_surrogate(doc):
        raise refuse("a lone surrogate escape in a string, which is not Unicode")
    return doc


def read_json_file(path: Path, limit: int, error: type[Exception], missing: str | None = None):
    """The JSON value of the file at ``path``, read bounded by ``limit`` bytes as files.read_text
    reads it and parsed strictly as :func:`load_json` parses it; every failure is ``error``
    naming the file in one line (``missing`` when there is no file)."""
    return load_json(read_text(path, limit, error, missing), str(path), error)


def _no_constant(name: str):
    raise _Refused(f"{name} is not a JSON number")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        shown = literal if len(literal) <= 24 else literal[:20] + "..."
        raise _Refused(f"the number {shown} is beyond a float's range")
    return value


def _holds_surrogate(doc) -> bool:
    """Whether a string anywhere in ``doc`` (a key or a value) holds a surrogate code point."""
    todo = [doc]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            if _SURROGATE.search(x):
                return True
        elif isinstance(x, dict):
            todo += x.keys()
            todo += x.values()
        elif isinstance(x, list):
            todo += x
    return False
