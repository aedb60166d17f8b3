"""``python -m benchmarks [--quick]``: run every suite, write JSON + Markdown results."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from benchmarks import (
    ctf,
    dashboard,
    denoise,
    export,
    foundation,
    motion,
    picking,
    pipeline,
    simulator,
)

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(
    os.environ.get("CRYOWARP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--suite",
        choices=[
            "all",
            "foundation",
            "simulator",
            "motion",
            "ctf",
            "export",
            "pipeline",
            "picking",
            "denoise",
            "dashboard",
        ],
        default="all",
        help="which suite to run (default: all; the simulator's k3 movie takes ~15 min, the "
        "motion suite simulates and caches its k3 movie on the first full run)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    reports = {}
    if args.suite in ("all", "foundation"):
        reports["foundation"] = foundation.run(quick=args.quick, shared_data=SHARED)
    if args.suite in ("all", "simulator"):
        reports["simulator"] = simulator.run(quick=args.quick)
    if args.suite in ("all", "motion"):
        reports["motion"] = motion.run(quick=args.quick)
    if args.suite in ("all", "ctf"):
        reports["ctf"] = ctf.run(quick=args.quick)
    if args.suite in ("all", "export"):
        reports["export"] = export.run(quick=args.quick)
    if args.suite in ("all", "pipeline"):
        reports["pipeline"] = pipeline.run(quick=args.quick)
    if args.suite in ("all", "denoise"):
        reports["denoise"] = denoise.run(quick=args.quick)
    if args.suite in ("all", "picking"):
        reports["picking"] = picking.run(quick=args.quick)
    if args.suite in ("all", "dashboard"):
        reports["dashboard"] = dashboard.run(quick=args.quick)
    for name, report in reports.items():
        report["machine"] = machine
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    # The summary covers every suite whose results exist, fresh or from an earlier run.
    modules = {
        "foundation": foundation,
        "simulator": simulator,
        "motion": motion,
        "ctf": ctf,
        "export": export,
        "pipeline": pipeline,
        "picking": picking,
        "denoise": denoise,
        "dashboard": dashboard,
    }
    summary = "# Benchmark results\n\nWritten by `python -m benchmarks`.\n\n"
    for name, module in modules.items():
        path = args.out / f"{name}.json"
        if path.is_file():
            summary += module.markdown(json.loads(path.read_text())) + "\n"
    (args.out / "README.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
