"""``python -m pptrain`` and ``torchrun -m pptrain``: the same entry point as the ``pptrain`` script."""

from .cli import main

main()
