#!/usr/bin/env bash
# Re-vendor TradingView Lightweight Charts into static/vendor/lightweight-charts/ from the npm registry.
#
# The app has no JavaScript build step: the page imports the library's standalone production ES module
# as a static file. This script is the only way those files change. It fetches the pinned tarball with
# `npm pack` (no node_modules, no install scripts), checks it against the pinned integrity hash so the
# result is byte-for-byte reproducible, and copies the build, its licence and a notice.
#
# To upgrade: set VERSION, run once with INTEGRITY="" to print the new hash, pin it, run again, then
# check the page (the chart API changes between majors, e.g. addCandlestickSeries in 4 vs addSeries in 5).
#
# Usage: scripts/vendor_lightweight_charts.sh            (needs node and npm)

set -euo pipefail

VERSION="5.2.1"
# `dist.integrity` of lightweight-charts@5.2.1 as published on registry.npmjs.org.
INTEGRITY="sha512-IVwoK1RLFiLPubaKIjNbtjWLnpPMqiABSrTay6whmNa8L1+19292VtHJ+BWyPUuLCwF0tcQlhEWd1CLB2a1nsQ=="
BUILD="lightweight-charts.standalone.production.mjs"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/static/vendor/lightweight-charts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
tarball="$(npm pack --silent "lightweight-charts@$VERSION")"
actual="sha512-$(node -e 'const c=require("crypto"),fs=require("fs");process.stdout.write(c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [[ -z "$INTEGRITY" ]]; then
    echo "integrity of lightweight-charts@$VERSION: $actual (pin it in INTEGRITY)" >&2
    exit 1
fi
if [[ "$actual" != "$INTEGRITY" ]]; then
    echo "integrity mismatch for lightweight-charts@$VERSION: expected $INTEGRITY, got $actual" >&2
    exit 1
fi
tar -xzf "$tarball"
packaged_version="$(node -p 'require("./package/package.json").version')"
[[ "$packaged_version" == "$VERSION" ]] || { echo "tarball holds version $packaged_version, not $VERSION" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest"
cp "package/dist/$BUILD" "$dest/$BUILD"
cp package/LICENSE "$dest/LICENSE"

# The npm package ships no NOTICE file, but the licence terms in its README ask users to show the
# attribution notice from the upstream repository's NOTICE; this is that notice.
cat > "$dest/NOTICE" <<'NOTICE'
TradingView Lightweight Charts
Copyright (с) 2023 TradingView, Inc. https://www.tradingview.com/
NOTICE

cat > "$dest/README.md" <<README
# Vendored: TradingView Lightweight Charts™

- Package: [\`lightweight-charts\`](https://www.npmjs.com/package/lightweight-charts) (npm)
- Version: $VERSION
- Integrity: \`$INTEGRITY\`
- File: \`$BUILD\`, copied unmodified from the npm package's standalone production build
  (\`dist/$BUILD\`: one ES module with its dependency \`fancy-canvas\` bundled in).
- Licence: Apache License 2.0, see \`LICENSE\` (from the package) and \`NOTICE\` (from the upstream
  repository, which the npm package does not include). The chart keeps the library's
  \`attributionLogo\` link to tradingview.com, and the page footer names TradingView, as the licence
  terms in the package README ask.

Do not edit these files by hand: re-vendor with \`scripts/vendor_lightweight_charts.sh\` (pin a new
version and its integrity hash there).
README

echo "vendored lightweight-charts@$VERSION into ${dest#"$repo_root"/}"
