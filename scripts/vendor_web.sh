#!/usr/bin/env bash
# Refresh the browser libraries the chat page (web/static/vendor/) and the browser tests
# (tests/vendor/) load, from the npm registry, at the exact versions pinned below.
#
#   scripts/vendor_web.sh            fetch the pinned versions and rewrite the vendored files
#   scripts/vendor_web.sh --check    fetch them and fail if a vendored file differs (CI-safe: no writes)
#
# To upgrade a library: change its version below, run the script, run the browser tests
# (tests/test_browser*.py), and commit the files with web/static/vendor/MANIFEST.txt.
# Only minified builds and the packages' licence files are kept; nothing is loaded from a CDN.
# npm pack checks each tarball against the registry's integrity hash.
set -euo pipefail

# package@version | file in the package | where it goes (relative to the repository root)
FILES=(
  "markdown-it@15.0.3|dist/browser/markdown-it.umd.min.js|web/static/vendor/markdown-it/markdown-it.min.js"
  "markdown-it@15.0.3|LICENSE|web/static/vendor/markdown-it/LICENSE"
  "dompurify@3.5.0|dist/purify.min.js|web/static/vendor/dompurify/purify.min.js"
  "dompurify@3.5.0|LICENSE|web/static/vendor/dompurify/LICENSE"
  "dompurify@3.5.0|LICENSE-MPL|web/static/vendor/dompurify/LICENSE-MPL"
  "@highlightjs/cdn-assets@11.12.0|highlight.min.js|web/static/vendor/highlight.js/highlight.min.js"
  "@highlightjs/cdn-assets@11.12.0|LICENSE|web/static/vendor/highlight.js/LICENSE"
  "axe-core@4.14.1|axe.min.js|tests/vendor/axe-core/axe.min.js"
  "axe-core@4.14.1|LICENSE|tests/vendor/axe-core/LICENSE"
  "axe-core@4.14.1|LICENSE-3RD-PARTY.txt|tests/vendor/axe-core/LICENSE-3RD-PARTY.txt"
)

check=0
[[ "${1:-}" == "--check" ]] && check=1
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

declare -A unpacked=()
for row in "${FILES[@]}"; do
  IFS='|' read -r spec _ _ <<<"$row"
  [[ -n "${unpacked[$spec]:-}" ]] && continue
  dir="$work/$(echo "$spec" | tr '/@' '__')"
  mkdir -p "$dir"
  tarball="$(cd "$dir" && npm pack --silent "$spec" | tail -n 1)"
  tar -xzf "$dir/$tarball" -C "$dir"
  unpacked[$spec]="$dir/package"
done

status=0
manifest="$work/MANIFEST.txt"
{
  echo "# Vendored browser libraries: written by scripts/vendor_web.sh (do not edit by hand)."
  echo "# package@version  file-in-package  ->  vendored path  sha256"
} >"$manifest"
for row in "${FILES[@]}"; do
  IFS='|' read -r spec src dest <<<"$row"
  from="${unpacked[$spec]}/$src"
  out="$work/out/$dest"
  mkdir -p "$(dirname "$out")"
  # Drop the source-map comment: the maps are not vendored, so browsers would ask for a missing file.
  sed -e '/^\/\/# sourceMappingURL=/d' "$from" >"$out"
  sum="$(sha256sum "$out" | cut -d' ' -f1)"
  echo "$spec  $src  ->  $dest  $sum" >>"$manifest"
  if (( check )); then
    if ! cmp -s "$out" "$root/$dest"; then
      echo "differs from $spec $src: $dest" >&2
      status=1
    fi
  else
    mkdir -p "$(dirname "$root/$dest")"
    cp "$out" "$root/$dest"
  fi
done

if (( check )); then
  cmp -s "$manifest" "$root/web/static/vendor/MANIFEST.txt" || { echo "differs: web/static/vendor/MANIFEST.txt" >&2; status=1; }
  (( status == 0 )) && echo "vendored files match the pinned npm packages"
  exit $status
fi
cp "$manifest" "$root/web/static/vendor/MANIFEST.txt"
du -ch $(for row in "${FILES[@]}"; do IFS='|' read -r _ _ dest <<<"$row"; echo "$root/$dest"; done) | tail -n 1 | sed 's/total/vendored in all/'
