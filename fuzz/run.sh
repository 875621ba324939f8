#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after another, with libFuzzer
# through cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP=1 lets stable rustc accept the
# `-Z sanitizer` flags cargo-fuzz passes). Installs cargo-fuzz from crates.io if it is missing;
# needs no other network. Exits non-zero if any target finds a crash, hang (> 10 s per input)
# or runs out of memory (> 2 GiB); the reproducer is then in fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Seeds: fuzz/seeds/ (small, committed) plus a few fixture models copied into the working
# corpus fuzz/corpus/TARGET/ (not committed). Set CARGO_TARGET_DIR to share a build directory.
set -uo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(onnx_reader convert_graph npy_reader idx_reader)

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz || exit 1
fi

# ASan finds memory errors in unsafe code and C; signgd and its dependencies are safe Rust, so
# the fuzzers run without a sanitizer (about twice as fast; panics, hangs and OOM still count).
build=(-O --sanitizer none)
start=$(date +%s)
cargo fuzz build "${build[@]}" || exit 1
echo "fuzz: built in $(($(date +%s) - start)) s"

fail=0
for t in "${targets[@]}"; do
    case "$t" in
        onnx_reader | convert_graph)
            seeds=fuzz/seeds/onnx max_len=65536
            extra=(fixtures/models/regnetx.onnx fixtures/models/attention.onnx fixtures/models/resnet.opset17.onnx)
            ;;
        npy_reader) seeds=fuzz/seeds/npy max_len=4096 extra=() ;;
        idx_reader) seeds=fuzz/seeds/idx max_len=4096 extra=() ;;
        *) echo "fuzz: unknown target $t" >&2; exit 2 ;;
    esac
    mkdir -p "fuzz/corpus/$t"
    for f in "${extra[@]}"; do [ -f "$f" ] && cp -n "$f" "fuzz/corpus/$t/"; done
    echo "fuzz: $t for $secs s"
    if ! cargo fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" "$seeds" -- \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        echo "fuzz: $t FAILED; reproducer in fuzz/artifacts/$t/" >&2
        fail=1
    fi
done
exit $fail
