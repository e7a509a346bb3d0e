#!/usr/bin/env bash
# Makes .ci/cache/dashboard.schema.json: a JSON Schema of Grafana's own
# `Dashboard` type, generated from the TypeScript types that npm
# @grafana/schema ships (it ships no JSON Schema of its own).
# tests/test_dashboards.py validates every dashboard against it.
#
# Needs node and npm. Installs into .ci/node_modules (gitignored, .ci/npm-install.sh); safe to rerun.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The versions are those of .ci/npm-packages.txt, the one list of the npm packages the tests use.
GRAFANA_SCHEMA_VERSION="$(sed -n 's|^@grafana/schema@||p' "$ci_dir/npm-packages.txt")"
TS_JSON_SCHEMA_GENERATOR_VERSION="$(sed -n 's|^ts-json-schema-generator@||p' "$ci_dir/npm-packages.txt")"
cache_dir="$ci_dir/cache"
schema="$cache_dir/dashboard.schema.json"
stamp="$cache_dir/dashboard.schema.version"
want="@grafana/schema@$GRAFANA_SCHEMA_VERSION ts-json-schema-generator@$TS_JSON_SCHEMA_GENERATOR_VERSION"

if [[ -s "$schema" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "grafana-schema: $schema is up to date ($want)"
    exit 0
fi

mkdir -p "$cache_dir"
bash "$ci_dir/npm-install.sh"

# The generated types moved between releases: 11.x ships them under dist/esm,
# later releases under dist/types.
package_dir="$ci_dir/node_modules/@grafana/schema/dist"
types=""
for candidate in \
    "$package_dir/esm/raw/dashboard/x/dashboard_types.gen.d.ts" \
    "$package_dir/types/raw/dashboard/x/types.gen.d.ts"; do
    if [[ -f "$candidate" ]]; then types="$candidate"; break; fi
done
if [[ -z "$types" ]]; then
    echo "grafana-schema: no dashboard types in $package_dir" >&2
    exit 1
fi
# --no-type-check: the .d.ts imports nothing that needs resolving for this type,
# and a full type check of the package would need its peer dependencies.
"$ci_dir/node_modules/.bin/ts-json-schema-generator" \
    --path "$types" --type Dashboard --no-type-check --out "$schema.tmp"
mv "$schema.tmp" "$schema"
echo "$want" > "$stamp"
echo "grafana-schema: wrote $schema ($want)"
