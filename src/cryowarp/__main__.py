"""``python -m cryowarp`` is the ``cryowarp`` command."""

from cryowarp.cli.main import app

app()
