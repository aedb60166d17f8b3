"""The live web dashboard (``cryowarp dashboard PROJECT``; docs/dashboard.md).

An interface layer: :func:`cryowarp.web.app.create_app` builds the application for one
project; the page and its scripts live in ``static/`` and are served from the package.
Importing this package imports no web framework (the CLI imports :mod:`cryowarp.web.app`
only when the dashboard is started).
"""
