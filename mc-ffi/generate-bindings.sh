#!/usr/bin/env bash
# Builds mc-ffi and generates its Kotlin, Swift and Python bindings.
#
#   mc-ffi/generate-bindings.sh OUT_DIR            # release build (opt-level z, LTO), shipped stripped
#   mc-ffi/generate-bindings.sh --debug OUT_DIR    # dev build, for tests
#
# Writes OUT_DIR/kotlin (dev/missioncontrol/relay/mc_ffi.kt), OUT_DIR/swift (mc_ffi.swift,
# mc_ffiFFI.h, mc_ffiFFI.modulemap), OUT_DIR/python (mc_ffi.py next to a copy of the
# library, so `import mc_ffi` works with OUT_DIR/python on sys.path), and OUT_DIR/lib (the
# library itself). Kotlin is generated with --no-format (no ktlint needed).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [ "${1:-}" = "--debug" ]; then
    profile=dev
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: $0 [--debug] OUT_DIR" >&2
    exit 2
fi
out=$1
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ "$profile" = release ]; then
    cargo build -p mc-ffi --profile ffi-release
    lib="$target_dir/ffi-release/libmc_ffi.so"
else
    cargo build -p mc-ffi
    lib="$target_dir/debug/libmc_ffi.so"
fi
cargo build -p uniffi-bindgen
bindgen="$target_dir/debug/uniffi-bindgen"

mkdir -p "$out"/{kotlin,swift,python,lib}
"$bindgen" generate --library "$lib" --language kotlin --no-format --out-dir "$out/kotlin"
"$bindgen" generate --library "$lib" --language swift --no-format --out-dir "$out/swift"
"$bindgen" generate --library "$lib" --language python --out-dir "$out/python"
cp "$lib" "$out/lib/"
cp "$lib" "$out/python/"
if [ "$profile" = release ]; then
    # The bindings were generated from the library's symbol table; what ships needs none.
    strip --strip-all "$out/lib/libmc_ffi.so" "$out/python/libmc_ffi.so"
fi
echo "bindings in $out (library: $(du -k "$out/lib/libmc_ffi.so" | cut -f1) KiB, $profile)"
