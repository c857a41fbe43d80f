#!/usr/bin/env bash
# Registers the FastAPI demo agent as agent `demo` once the edge answers,
# exactly as the original design's command does, and the delegating agent as
# `delegate` when MAP_DELEGATE_AGENT_ADDR is set (run.sh sets it). Run by
# supervisord.
set -eu
http="${MAP_HTTP_ADDR:-127.0.0.1:8080}"
demo="${MAP_DEMO_AGENT_ADDR:-127.0.0.1:8000}"
auth=()
[ -n "${MAP_API_KEY:-}" ] && auth=(-H "Authorization: Bearer ${MAP_API_KEY}")
for _ in $(seq 1 100); do
    if curl -fsS "http://${http}/health" >/dev/null 2>&1; then
        curl -fsS -X POST "http://${http}/v1/agents/register" "${auth[@]}" \
            -H "Content-Type: application/json" \
            -d "{\"agent_id\":\"demo\",\"name\":\"Demo Agent\",\"endpoint\":\"http://${demo}\"}"
        echo
        if [ -n "${MAP_DELEGATE_AGENT_ADDR:-}" ]; then
            curl -fsS -X POST "http://${http}/v1/agents/register" "${auth[@]}" \
                -H "Content-Type: application/json" \
                -d "{\"agent_id\":\"delegate\",\"name\":\"Delegating Agent\",\"endpoint\":\"http://${MAP_DELEGATE_AGENT_ADDR}\"}"
            echo
        fi
        exit 0
    fi
    sleep 0.2
done
echo "register-demo: the edge at http://${http} did not become healthy" >&2
exit 1
