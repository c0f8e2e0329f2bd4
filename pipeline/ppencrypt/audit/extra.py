"""torch, for the learned attacks only: imported when ``--learned`` asks for it, so a torch-free
install runs every other command (and ``ppencrypt audit`` without ``--learned``)."""

from __future__ import annotations

import os
import sys

from ..errors import MissingExtraError

EXTRA = "pip install 'ppencrypt[train]'"


def require_torch(what: str = "ppencrypt audit --learned"):
    """The torch module, or MissingExtraError naming the extra that provides it (and ``what`` needs it)."""
    if "torch" not in sys.modules:
        # OpenMP threads spin while they wait for each other by default; on a CPU shared with
        # other jobs a spinning thread steals the core its partner needs, and a training step
        # of the inverter took 1,467 ms instead of 104 ms (2 threads, 2 busy cores). Waiting
        # passively costs next to nothing on an idle machine. Read once, when torch starts.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        raise MissingExtraError(f"{what} needs torch, which is not installed: {EXTRA}") from None
    return torch
