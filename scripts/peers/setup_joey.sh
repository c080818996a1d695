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

# Never the product's environment: not the active venv, not the Python that runs this.
target="$(realpath -m "$venv")"
for product in "${VIRTUAL_ENV:-}" "$("$python" -c 'import sys; print(sys.prefix)')"; do
    if [[ -n "$product" && ( "$target" == "$(realpath -m "$product")" \
          || "$target" == "$(realpath -m "$product")"/* ) ]]; then
        echo "setup_joey.sh: $venv is (inside) the environment $product; give another" \
            "directory" >&2
        exit 1
    fi
done
if [[ "$venv" == "$repo/.peers/"* ]]; then
    # Keep the default location out of git without touching the repo's .gitignore.
    mkdir -p "$repo/.peers" && echo '*' > "$repo/.peers/.gitignore"
fi

start=$(date +%s)
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-joey.txt"
# Import what training and decoding import, not only the package (whose __init__ is empty).
"$venv/bin/python" -c "import joeynmt, joeynmt.training, joeynmt.prediction, torch
print('joeynmt', joeynmt.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "installed in $(( $(date +%s) - start )) s; venv size $(du -sh "$venv" | cut -f1): $venv"
echo "JOEY_PYTHON=$venv/bin/python"
