#!/usr/bin/env bash
# ./scripts/bench.sh NAME [ARGS...]: builds (Release) and runs the benchmark
# bench_NAME; its last line is one JSON object with the figures.
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: ./scripts/bench.sh NAME [ARGS...]  (NAME: broker, store, edge, bridge, scale, retention, py, longrun, calls, call)" >&2
    exit 2
fi
name=$1
shift
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bench/bench_$name
[ -x "$bin" ] || { echo "bench: no benchmark '$name' ($bin)" >&2; exit 2; }
exec "$bin" "$@"
