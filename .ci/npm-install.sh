#!/usr/bin/env bash
# Installs every package of .ci/npm-packages.txt into .ci/node_modules (gitignored), in one npm
# call: a --no-save install drops the packages it was not asked for, so installing them one
# script at a time would undo the other's. Does nothing when all are there at their versions.
# Needs node and npm.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mapfile -t packages < <(grep -v -e '^#' -e '^[[:space:]]*$' "$ci_dir/npm-packages.txt")

installed() {  # name@version -> is that version in .ci/node_modules?
    local name="${1%@*}" version="${1##*@}"
    local manifest="$ci_dir/node_modules/$name/package.json"
    [[ -f "$manifest" ]] && [[ "$(node -p "require('$manifest').version")" == "$version" ]]
}

missing=0
for package in "${packages[@]}"; do
    installed "$package" || missing=1
done
if [[ "$missing" == 0 ]]; then
    echo "npm-install: ${packages[*]} present"
    exit 0
fi
# --prefix keeps everything inside .ci/; no package.json is written to the repo.
npm install --prefix "$ci_dir" --no-save --no-audit --no-fund --loglevel=error "${packages[@]}"
