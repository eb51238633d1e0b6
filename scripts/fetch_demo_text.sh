#!/usr/bin/env bash
# The English text the demo model (models/wick-demo) is trained on, from Debian packages: the King James Bible
# (bible-kjv-text, read out with bible-kjv's own `bible` program), the fortune cookie files (fortunes,
# fortunes-min) and the Jargon File (dict-jargon). Runs on the dev machine (it downloads; the GPU machine has no
# network): `apt-get download` into DIR/deb, unpacked into DIR/pkg (never into /), and the raw text into DIR/raw:
#   DIR/raw/kjv.txt              the whole KJV as `bible` prints it (chapter headings, numbered verses)
#   DIR/raw/fortunes/<file>      the cookie files, '%'-separated
#   DIR/raw/jargon.txt           the dictd database of the Jargon File, uncompressed
#   DIR/raw/copyright/<package>  each package's copyright file (make_demo_model.py quotes their licences)
#   DIR/raw/versions.txt         the package versions
# usage: scripts/fetch_demo_text.sh [DIR]   (default .demo-text, git-ignored; scripts/gpu-demo-model.sh carries it)
set -euo pipefail
dir=${1:-.demo-text}
pkgs=(bible-kjv bible-kjv-text fortunes fortunes-min dict-jargon)
rm -rf "$dir/raw" "$dir/pkg"
mkdir -p "$dir/deb" "$dir/pkg" "$dir/raw/fortunes" "$dir/raw/copyright"
dir=$(cd "$dir" && pwd)
(cd "$dir/deb" && rm -f ./*.deb && apt-get download "${pkgs[@]}" 2>&1 | grep -v "unsandboxed" || true)
: >"$dir/raw/versions.txt"
for p in "${pkgs[@]}"; do
  deb=$(ls "$dir/deb/${p}_"*.deb)
  dpkg -x "$deb" "$dir/pkg"
  echo "$p $(dpkg-deb -f "$deb" Version)" >>"$dir/raw/versions.txt"
  cp "$dir/pkg/usr/share/doc/$p/copyright" "$dir/raw/copyright/$p"
done
"$dir/pkg/usr/bin/bible" -p "$dir/pkg/usr/lib" "gen1:1-rev22:21" >"$dir/raw/kjv.txt"
for f in "$dir"/pkg/usr/share/games/fortunes/*; do
  case "$f" in *.dat | *.u8) continue ;; esac
  [ -f "$f" ] && cp "$f" "$dir/raw/fortunes/"
done
zcat "$dir/pkg/usr/share/dictd/jargon.dict.dz" >"$dir/raw/jargon.txt"
echo "demo text in $dir/raw: $(du -sh "$dir/raw" | cut -f1) ($(wc -l <"$dir/raw/versions.txt") packages)"
