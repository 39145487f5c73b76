#!/usr/bin/env bash
# `make install` into a temporary DESTDIR (PREFIX /usr/local): hearth and hearthd land in
# usr/local/bin, run from there with nothing of the source or build tree on their PATH, carry no
# RPATH/RUNPATH and no path of either tree outside their debug information; `make uninstall`
# takes them away again.
# Usage: install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail

src=$(realpath "$1")
build=$(realpath "$2")
dest=$(mktemp -d /tmp/hearth-install-test.XXXXXX)
trap 'rm -rf "$dest"' EXIT

fail() {
  echo "install_test: $*" >&2
  exit 1
}

make -C "$src" --no-print-directory install BUILD="$build" DESTDIR="$dest" PREFIX=/usr/local

bin="$dest/usr/local/bin"
for f in "$bin/hearth" "$bin/hearthd" "$dest/usr/local/share/doc/hearth/README.md" \
  "$dest/usr/local/share/doc/hearth/openapi.yaml"; do
  [[ -f $f ]] || fail "make install did not install $f; installed: $(cd "$dest" && find . -type f)"
done
for f in "$bin/hearth" "$bin/hearthd"; do
  [[ -x $f ]] || fail "$f is not executable"
  if readelf -d "$f" | grep -E 'RPATH|RUNPATH'; then
    fail "$f has an RPATH/RUNPATH; installed programs must find their libraries on their own"
  fi
  # Outside its debug information (whose compilation directory is where it was built, for
  # debuggers to find the sources), nothing in the program names either tree.
  objcopy --strip-debug "$f" "$dest/no-debug"
  for tree in "$src" "$build"; do
    if grep -qaF "$tree" "$dest/no-debug"; then
      fail "$f names $tree: an installed program must not depend on the tree it was built in"
    fi
  done
  rm -f "$dest/no-debug"
done

# Run from /, with only the installed bin and the system's directories on PATH.
out=$(cd / && env -i PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" hearth --help) ||
  fail "the installed hearth --help failed"
grep -q "vm" <<<"$out" || fail "the installed hearth --help does not list its commands: $out"
out=$(cd / && env -i PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" hearthd --help) ||
  fail "the installed hearthd --help failed"
grep -q -- "--data-dir" <<<"$out" || fail "the installed hearthd --help does not list --data-dir"

make -C "$src" --no-print-directory uninstall BUILD="$build" DESTDIR="$dest" PREFIX=/usr/local
left=$(cd "$dest" && find . -type f)
[[ -z $left ]] || fail "make uninstall left: $left"
echo "install_test: ok"
