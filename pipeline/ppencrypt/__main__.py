"""``python -m ppencrypt``: the same entry point as the installed ``ppencrypt`` script."""

from .cli import main

main()
