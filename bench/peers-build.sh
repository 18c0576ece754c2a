#!/usr/bin/env bash
# Builds llama.cpp's llama-diffusion-cli (+ llama-quantize, llama-tokenize) CPU-only, for `npm run bench:peers`,
# and our exit-time shim bench/peers-logflush.c next to them.
#
#   bash bench/peers-build.sh            # prints KEY=VALUE lines on stdout (paths), progress on stderr
#
# Source: the npm package node-llama-cpp@3.22.1 ships llama.cpp's tree as a git bundle
# (package/llama/gitRelease.bundle). We `npm pack` it, clone the bundle and build with cmake into
# $DYLLM_PEERS_CACHE (default ~/.cache/dyllm/peers), keyed by the bundle's commit; a finished build is reused.
# Nothing of llama.cpp enters the repository. Takes several minutes on 2 cores the first time.
set -euo pipefail

NLC_VERSION="3.22.1"
CACHE="${DYLLM_PEERS_CACHE:-$HOME/.cache/dyllm/peers}"
JOBS="${DYLLM_PEERS_JOBS:-$(nproc 2>/dev/null || echo 2)}"
TARGETS=(llama-diffusion-cli llama-quantize llama-tokenize)

die() { echo "peers-build: $*" >&2; exit 1; }
log() { echo "peers-build: $*" >&2; }

for tool in cmake git npm tar make; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH: building llama.cpp needs cmake, a C++ compiler (g++), make, git, npm and tar (Debian: apt-get install cmake g++ make git)"
done
CXX_BIN="${CXX:-g++}"
command -v "$CXX_BIN" >/dev/null 2>&1 || die "C++ compiler '$CXX_BIN' not found: install g++ (Debian: apt-get install g++) or set CXX"

mkdir -p "$CACHE"
PKG="$CACHE/node-llama-cpp-$NLC_VERSION"
if [ ! -f "$PKG/package/llama/gitRelease.bundle" ]; then
  log "fetching node-llama-cpp@$NLC_VERSION (carries llama.cpp's source as a git bundle)"
  tmp="$(mktemp -d "$CACHE/.pack-XXXXXX")"
  (cd "$tmp" && npm pack "node-llama-cpp@$NLC_VERSION" --silent >/dev/null) || die "npm pack node-llama-cpp@$NLC_VERSION failed (is the npm registry reachable?)"
  tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  rm -rf "$PKG" && mv "$tmp" "$PKG"
fi
BUNDLE="$PKG/package/llama/gitRelease.bundle"
COMMIT="$(git bundle list-heads "$BUNDLE" | awk '$2=="HEAD"{print $1; exit}')"
[ -n "$COMMIT" ] || die "no HEAD in $BUNDLE"
SHORT="${COMMIT:0:12}"
SRC="$CACHE/$SHORT/src"
BUILD="$CACHE/$SHORT/build"
BIN="$BUILD/bin"

have_all() { for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }

if ! have_all; then
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    log "cloning llama.cpp $SHORT from the bundle"
    rm -rf "$SRC" && mkdir -p "$CACHE/$SHORT"
    git clone -q "$BUNDLE" "$SRC" 2>/dev/null || die "git clone of $BUNDLE failed"
  fi
  log "configuring (Release, GGML_NATIVE=ON, CPU only, no CURL/OpenSSL)"
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
    -DCMAKE_CXX_COMPILER="$CXX_BIN" >"$CACHE/$SHORT/cmake-configure.log" 2>&1 \
    || die "cmake configure failed; see $CACHE/$SHORT/cmake-configure.log"
  log "building ${TARGETS[*]} with $JOBS jobs (minutes on 2 cores; log: $CACHE/$SHORT/cmake-build.log)"
  cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" >"$CACHE/$SHORT/cmake-build.log" 2>&1 \
    || die "build failed; see $CACHE/$SHORT/cmake-build.log"
  have_all || die "build finished but ${TARGETS[*]} are not all in $BIN"
fi

# our exit-time shim (bench/peers-logflush.c: lets llama.cpp's log writer thread finish before the process ends)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CC_BIN="${CC:-gcc}"
command -v "$CC_BIN" >/dev/null 2>&1 || die "C compiler '$CC_BIN' not found: install gcc (Debian: apt-get install gcc) or set CC"
"$CC_BIN" -shared -fPIC -O2 -o "$BUILD/peers-logflush.so.tmp" "$HERE/peers-logflush.c" \
  && mv "$BUILD/peers-logflush.so.tmp" "$BUILD/peers-logflush.so" || die "compiling $HERE/peers-logflush.c failed"

echo "LLAMA_COMMIT=$COMMIT"
echo "LOGFLUSH=$BUILD/peers-logflush.so"
echo "LLAMA_SRC=$SRC"
echo "LLAMA_BIN=$BIN"
echo "GGUF_PY=$SRC/gguf-py"
echo "NODE_LLAMA_CPP=$NLC_VERSION"
