#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole platform in the
# foreground under supervisord (deploy/supervisord.conf, the same file as
# production). Ctrl-C stops everything. Honours the MAP_* variables (SPEC §1).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

root=$(pwd)
export MAP_HOME="$root"
export MAP_BIN="${MAP_BIN:-$root/build/bin}"
export MAP_RUN_DIR="${MAP_RUN_DIR:-$root/data/run}"
export MAP_ECHO_WORKERS="${MAP_ECHO_WORKERS:-2}"
export MAP_BROKER="${MAP_BROKER:-tcp://127.0.0.1:5555}"
export MAP_TAP="${MAP_TAP:-tcp://127.0.0.1:5556}"
export MAP_DB="${MAP_DB:-$root/data/map.db}"
export MAP_HTTP_ADDR="${MAP_HTTP_ADDR:-127.0.0.1:8080}"
export MAP_DEMO_AGENT_ADDR="${MAP_DEMO_AGENT_ADDR:-127.0.0.1:8000}"
export MAP_DELEGATE_AGENT_ADDR="${MAP_DELEGATE_AGENT_ADDR:-127.0.0.1:8001}"
mkdir -p "$MAP_RUN_DIR" "$(dirname "$MAP_DB")"

cat <<MSG
The platform is starting (logs in $MAP_RUN_DIR). Try:
  curl http://$MAP_HTTP_ADDR/health
  curl -X POST http://$MAP_HTTP_ADDR/internal/invoke -H "Content-Type: application/json" \\
       -d '{"session_id":"s1","agent_id":"echo","input_message":{"role":"user","content":"hello"}}'
  (agent_id "py-echo" is the same agent in Python: agents/python/examples/py_echo.py;
   "delegate" answers by calling "echo" as a child run: agents/demo/delegate_agent.py;
   agent_id "fanout" calls echo twice as child runs and merges the answers: agents/fanout)
  WebSocket: ws://$MAP_HTTP_ADDR/ws     Tap: $MAP_BIN/map-tap --tap $MAP_TAP
Ctrl-C stops everything.
MSG
exec supervisord -n -c deploy/supervisord.conf
