#!/usr/bin/env bash
# Create, or reuse in about a second, the project's environment in .venv/ (git-ignored).
#
# * If $PYTHON can already import detectron2 (say upstream main built from source), .venv sees
#   that interpreter's packages (through a .pth file), so its torch and compiled detectron2 are
#   kept; only the other requirements are added.
# * Otherwise the third-party packages (requirements.txt + detectron2 v0.6, pure-Python build, by
#   scripts/install_detectron2.py) are installed once into a cache folder keyed by a hash of
#   those files and the Python version (about 5.5 GB, mostly CUDA torch), which every clone on
#   this machine shares through a .pth file: CI does not reinstall it on each run. A changed
#   requirements.txt gives a new key, hence a fresh install; nothing is ever updated in place.
#
# Environment variables: PYTHON (interpreter, default python3.11 or python3),
# RESNET_BACKBONE_CACHE (cache folder, default ~/.cache/resnet_backbone).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
deps_key=$( { cat requirements.txt scripts/install_detectron2.py; "$PYTHON" -VV; } | sha256sum | cut -c1-16)
venv_key=$( { echo "$deps_key"; cat setup.py scripts/setup_env.sh; } | sha256sum | cut -c1-16)
stamp=.venv/.ready-$venv_key
if [ -f "$stamp" ]; then exit 0; fi

quiet_pip() { "$@" 2>&1 | grep -v "^WARNING: Location .* is ignored" || true; return "${PIPESTATUS[0]}"; }
rm -rf .venv

# .venv itself stays small: a .pth file makes it see the third-party packages that live in
# another site directory (the shared cache, or the interpreter that already has detectron2).
link_site_dirs() {
    local site
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for dir in "$@"; do echo "import site; site.addsitedir('$dir')"; done > "$site/resnet_backbone_deps.pth"
}

if "$PYTHON" -c "import detectron2" 2>/dev/null; then
    echo "[setup_env] $PYTHON already imports detectron2: .venv will use its packages."
    "$PYTHON" -m venv .venv
    # All site directories of that interpreter (works for system, conda and venv interpreters).
    link_site_dirs $("$PYTHON" -c 'import site, sys; print(" ".join(p for p in sys.path if p.endswith("-packages")))')
    # Keep the interpreter's own torch: its compiled detectron2 ops were built against it.
    grep -vE '^(torch|torchvision)([=<>!~ ]|$)' requirements.txt > .venv/requirements-extra.txt
    quiet_pip .venv/bin/python -m pip install -r .venv/requirements-extra.txt
else
    cache=${RESNET_BACKBONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/resnet_backbone}
    deps=$cache/env-$deps_key
    if [ ! -f "$deps/.complete" ]; then
        echo "[setup_env] installing the dependencies into $deps (once per machine, a few minutes)"
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/.building-XXXXXX")
        "$PYTHON" -m venv "$tmp"
        quiet_pip "$tmp/bin/python" -m pip install -r requirements.txt
        quiet_pip "$tmp/bin/python" scripts/install_detectron2.py
        touch "$tmp/.complete"
        rm -rf "$deps"
        mv "$tmp" "$deps"
    fi
    "$PYTHON" -m venv .venv
    link_site_dirs "$deps/lib/python$pyver/site-packages"
fi

quiet_pip .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
.venv/bin/python -c "import torch, torchvision, detectron2, resnet_backbone; \
print('[setup_env] ready: torch', torch.__version__, '| torchvision', torchvision.__version__, \
'| detectron2', detectron2.__version__, 'from', detectron2.__file__.rsplit('/', 2)[0])"
touch "$stamp"
