#!/usr/bin/env bash
# Host side: build an upstream tcmu-runner (the C reference runner) from a
# source tree the admin supplies, for the benchmarks that compare tcmu-ts
# with its plain `file` handler (Debian's 1.5.4 package has none; upstream's
# file_example.c is built as handler_file.so).
#
#   scripts/vm/build-tcmu-runner.sh SRC_DIR   -> prints the build directory
#
# SRC_DIR is an unpacked upstream release (e.g. `git archive v1.6.2` of
# github.com/open-iscsi/tcmu-runner); nothing of it is kept in this
# repository. The build goes to .cache/tcmu-runner-VERSION (the guest sees the
# host's root, so the binary and handlers there are the guest's too). Only the
# runner and the file handler are built: Gluster, qcow, rbd, zbc, fbo and
# tcmalloc are off. As root, the -dev packages the build needs (and with them
# the libraries the runner loads) are installed on demand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="${1:?usage: build-tcmu-runner.sh SRC_DIR}"
[ -f "$src/CMakeLists.txt" ] && [ -f "$src/file_example.c" ] \
  || { echo "build-tcmu-runner: $src is not a tcmu-runner source tree (no CMakeLists.txt or file_example.c)" >&2; exit 2; }
version=$(sed -n 's/^set(VERSION \([0-9.]*\))$/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || { echo "build-tcmu-runner: no set(VERSION ...) in $src/CMakeLists.txt" >&2; exit 2; }

missing=
for p in cmake libnl-3-dev libnl-genl-3-dev libglib2.0-dev libkmod-dev; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=" $p"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { echo "build-tcmu-runner: missing packages:$missing (apt-get install them)" >&2; exit 2; }
  echo "build-tcmu-runner: installing$missing" >&2
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
fi

out="$ROOT/.cache/tcmu-runner-$version"
mkdir -p "$out/build"
# An out-of-tree build: the source tree stays as the admin gave it (cmake
# writes version.h next to the sources, so copy them first).
rm -rf "$out/src" && cp -a "$src" "$out/src"
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -Dwith-glfs=false -Dwith-qcow=false -Dwith-rbd=false -Dwith-zbc=false -Dwith-fbo=false -Dwith-tcmalloc=false \
  >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log" >&2; exit 1; }
make -C "$out/build" -j"$(nproc)" tcmu-runner handler_file >"$out/make.log" 2>&1 || { tail -30 "$out/make.log" >&2; exit 1; }
[ -x "$out/build/tcmu-runner" ] && [ -f "$out/build/handler_file.so" ] \
  || { echo "build-tcmu-runner: the build made no tcmu-runner or handler_file.so (see $out/make.log)" >&2; exit 1; }
echo "$out/build"
