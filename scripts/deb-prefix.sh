# Sourced by the GPU scripts (run from the repository root): Debian packages a machine lacks come as .deb files in
# .deb/ (it has no network) and are unpacked into .prefix/, never into /; the build then finds them there.
if compgen -G ".deb/*.deb" >/dev/null; then
  for f in .deb/*.deb; do dpkg -x "$f" .prefix; done
  prefix=$PWD/.prefix/usr
  for pc in "$prefix"/lib/x86_64-linux-gnu/pkgconfig/*.pc; do sed -i "s|^prefix=.*|prefix=$prefix|" "$pc"; done
  export PKG_CONFIG_PATH=$prefix/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}
  export LD_LIBRARY_PATH=$prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  export CMAKE_PREFIX_PATH=$prefix:${CMAKE_PREFIX_PATH:-}
fi
