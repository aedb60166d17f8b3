"""``python -m benchmarks [--quick]``: run every suite, write JSON + Markdown results."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from benchmarks import foundation

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(
    os.environ.get("CRYOWARP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = foundation.run(quick=args.quick, shared_data=SHARED)
    report["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    (args.out / "foundation.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = "# Benchmark results\n\nWritten by `python -m benchmarks`.\n\n"
    summary += foundation.markdown(report)
    (args.out / "README.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
