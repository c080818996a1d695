#!/usr/bin/env bash
# Create Joey NMT's own virtual environment for the peer benchmark (issue 29) and install
# scripts/peers/requirements-joey.txt into it. Never the product's environment.
#
#   bash scripts/peers/setup_joey.sh [VENV_DIR]      # default: .peers/joey-venv in the repo
#
# Then: JOEY_PYTHON=VENV_DIR/bin/python python -m pytest -q tests/test_peers.py
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.peers/joey-venv}"
python="${PYTHON:-python3}"

if [[ -n "${VIRTUAL_ENV:-}" && "$(realpath -m "$venv")" == "$(realpath -m "$VIRTUAL_ENV")"* ]]; then
    echo "setup_joey.sh: $venv is inside the active environment $VIRTUAL_ENV;" \
        "give a separate directory" >&2
    exit 1
fi
if [[ "$venv" == "$repo/.peers/"* ]]; then
    # Keep the default location out of git without touching the repo's .gitignore.
    mkdir -p "$repo/.peers" && echo '*' > "$repo/.peers/.gitignore"
fi

start=$(date +%s)
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-joey.txt"
"$venv/bin/python" -c "import joeynmt, torch; print('joeynmt', joeynmt.__version__, \
'torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "installed in $(( $(date +%s) - start )) s; venv size $(du -sh "$venv" | cut -f1): $venv"
echo "JOEY_PYTHON=$venv/bin/python"
