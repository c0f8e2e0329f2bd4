"""The experiment harness: [P]'s Tables 2 and 3 as one command (``make reproduce``).

Unlike ``pptrain``, which is the server and never holds a key, this harness plays both parties:
it owns the client's key, encrypts with ``ppencrypt`` (after augmenting the plain images, for
the "augmentation in the client" rows) and trains with ``pptrain`` as the server would. It
therefore imports ``ppencrypt`` and ``pptrain`` both, and lives outside them: neither
imports it. Run from the repository root: ``python -m experiments --help``.
"""
