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
# Then this package is installed into .venv in editable mode, and the script checks, from
# another directory, that `import resnet_backbone` finds this checkout.
#
# Every step that fails stops the script with its own output and a non-zero exit status (so
# `make test` / `make demo` stop too); nothing is reported ready that is not.
#
# .venv is created without pip and setuptools of its own: the bundled copies (setuptools 65 for
# Python 3.11) would come first on sys.path and shadow the pinned ones of the linked site
# directory (setuptools 65 cannot build an editable wheel: "invalid command 'bdist_wheel'").
#
# Environment variables: PYTHON (interpreter, default python3.11 or python3),
# RESNET_BACKBONE_CACHE (cache folder, default ~/.cache/resnet_backbone).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)

say() { echo "[setup_env] $*"; }
die() { echo "[setup_env] error: $*" >&2; exit 1; }

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
[ -n "$PYTHON" ] || die "no python3 found; set PYTHON=/path/to/python3.11"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || die "PYTHON=$PYTHON does not run"
deps_key=$( { cat requirements.txt scripts/install_detectron2.py; "$PYTHON" -VV; } | sha256sum | cut -c1-16)
venv_key=$( { echo "$deps_key"; cat setup.py scripts/setup_env.sh; cat pyproject.toml 2>/dev/null || true; } \
            | sha256sum | cut -c1-16)
stamp=.venv/.ready-$venv_key
if [ -f "$stamp" ]; then exit 0; fi

# Run a command (pip, the detectron2 installer) with its output shown, minus pip's notes about
# the linked site directories; its exit status is the command's, so `set -e` stops on failure.
run() {
    local status=0
    "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; } || status=$?
    [ "$status" -eq 0 ] || die "this step failed (exit status $status; its output is above): $*"
}

# .venv itself stays small: a .pth file makes it see the third-party packages that live in
# another site directory (the shared cache, or the interpreter that already has detectron2).
link_site_dirs() {
    local site
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for dir in "$@"; do echo "import site; site.addsitedir('$dir')"; done > "$site/resnet_backbone_deps.pth"
}

rm -rf .venv
if "$PYTHON" -c "import detectron2" 2>/dev/null; then
    say "$PYTHON already imports detectron2: .venv will use its packages."
    "$PYTHON" -m venv --without-pip .venv
    # All site directories of that interpreter (works for system, conda and venv interpreters).
    link_site_dirs $("$PYTHON" -c 'import site, sys; print(" ".join(p for p in sys.path if p.endswith("-packages")))')
    .venv/bin/python -m pip --version >/dev/null 2>&1 \
        || die "$PYTHON has detectron2 but no pip; install pip into it (python -m ensurepip)"
    # Keep the interpreter's own torch: its compiled detectron2 ops were built against it.
    grep -vE '^(torch|torchvision)([=<>!~ ]|$)' requirements.txt > .venv/requirements-extra.txt
    run .venv/bin/python -m pip install -r .venv/requirements-extra.txt
else
    cache=${RESNET_BACKBONE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/resnet_backbone}
    deps=$cache/env-$deps_key
    if [ ! -f "$deps/.complete" ]; then
        say "installing the dependencies into $deps (once per machine, a few minutes)"
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/.building-XXXXXX")
        trap 'rm -rf "$tmp"' EXIT  # a failed install leaves nothing half-built behind
        "$PYTHON" -m venv "$tmp"
        run "$tmp/bin/python" -m pip install -r requirements.txt
        run "$tmp/bin/python" scripts/install_detectron2.py
        touch "$tmp/.complete"
        rm -rf "$deps"
        mv "$tmp" "$deps"
        trap - EXIT
    fi
    "$PYTHON" -m venv --without-pip .venv
    link_site_dirs "$deps/lib/python$pyver/site-packages"
fi

run .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
# From another directory, so that the import cannot succeed through the current folder.
found=$(cd / && "$repo/.venv/bin/python" -c "import resnet_backbone, os; \
print(os.path.dirname(os.path.dirname(os.path.realpath(resnet_backbone.__file__))))") \
    || die "the editable install did not work: '.venv/bin/python -c \"import resnet_backbone\"' fails outside the repository"
[ "$found" = "$repo" ] || die "resnet_backbone is imported from $found, not from this checkout ($repo)"
(cd / && "$repo/.venv/bin/python" -c "import torch, torchvision, detectron2; \
print('[setup_env] ready: torch', torch.__version__, '| torchvision', torchvision.__version__, \
'| detectron2', detectron2.__version__, 'from', detectron2.__file__.rsplit('/', 2)[0], \
'| resnet_backbone from $repo')") || die "the environment does not import torch, torchvision and detectron2"
touch "$stamp"
