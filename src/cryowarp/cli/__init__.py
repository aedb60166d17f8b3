"""Interface layer: the ``cryowarp`` command.  Commands hold no algorithms; each lives in
its own module with a docstring that is its help text and a worked example."""
