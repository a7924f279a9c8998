#!/usr/bin/env bash
# Re-vendor KaTeX from the npm registry: the minified script, stylesheet and woff2 fonts (about 0.6 MB).
set -euo pipefail
version="${1:-0.19.1}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "katex@${version}" >/dev/null && tar xzf "katex-${version}.tgz")
rm -rf "$here/katex" && mkdir -p "$here/katex/fonts"
cp "$work/package/dist/katex.min.js" "$work/package/dist/katex.min.css" "$work/package/LICENSE" "$here/katex/"
cp "$work"/package/dist/fonts/*.woff2 "$here/katex/fonts/"
echo "vendored katex ${version} into $here/katex"
