"""cryowarp benchmarks: ``python -m benchmarks`` (or ``make bench``).

Each figure is a ratio to a baseline measured in the same run on the same machine (for speed:
a plain FFT of the same size), because the machines are shared and noisy.  Results are
written to ``benchmarks/results/<suite>.json`` and summarised in
``benchmarks/results/README.md``.
"""
