#!/usr/bin/env bash
# Installs cryowarp and its development tools into the current Python environment.
# Idempotent and quick when nothing changed (a stamp keyed on pyproject.toml).
#
# PyTorch comes first: torch==2.13.0 is pinned *before* the package is installed, so that pip
# never resolves a CUDA build on a CPU-only machine.  A torch that is already present (for
# example a CUDA build on a GPU machine) is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian's chromium for the dashboard's end-to-end tests (tests/web; Playwright drives it, it
# never downloads a browser). Installed when missing and this is a root shell with apt-get;
# elsewhere those tests skip and say why. CRYOWARP_NO_BROWSER=1 leaves it out.
if [ -z "${CRYOWARP_NO_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[install] installing Debian's chromium for the dashboard browser tests"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; then
        echo "[install] warning: chromium could not be installed; the browser tests will skip" >&2
    fi
fi

stamp=.install-stamp
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import cryowarp, torch" 2>/dev/null; then
    exit 0
fi

if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
    echo "[install] installing torch==2.13.0 (CPU build where no GPU is present)"
    "$PY" -m pip install -q "torch==2.13.0"
fi
torch_version=$("$PY" -c "from importlib.metadata import version; print(version('torch').split('+')[0])")
constraints=$(mktemp)
echo "torch==${torch_version}" > "$constraints"
echo "[install] installing cryowarp[dev] (torch pinned to ${torch_version})"
"$PY" -m pip install -q -c "$constraints" -e ".[dev]"
rm -f "$constraints"
if "$PY" -m pip show torchvision >/dev/null 2>&1; then
    echo "[install] note: torchvision is installed in this environment; cryowarp does not use it" >&2
fi
echo "$want" > "$stamp"
