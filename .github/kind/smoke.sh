#!/usr/bin/env bash
# The kind job's end-to-end check of the installed chart: the API answers, a TrainingSession
# created through it trains to completion on the trainer image (CPU, tiny config), and its
# checkpoints are in S3.
set -euo pipefail
NS=${NAMESPACE:-pivot}
PORT=18000

kubectl -n "$NS" port-forward svc/pivot-api "$PORT:80" >/tmp/port-forward.log 2>&1 &
pf=$!
trap 'kill "$pf"' EXIT
API="http://127.0.0.1:$PORT/api/v1"
AUTH=()
key=$(kubectl -n "$NS" get secret pivot-api-keys -o jsonpath='{.data.api-keys}' 2>/dev/null \
  | base64 -d | cut -d, -f1 || true)
[ -n "$key" ] && AUTH=(-H "X-API-Key: $key")

for _ in $(seq 60); do
  curl -fsS "$API/health" >/dev/null 2>&1 && break
  sleep 2
done
curl -fsS "$API/health"
echo

body='{"session_name": "kind-smoke", "config": {"epochs": 2, "batch_size": 16,
  "image_size": 16, "num_train": 64, "num_val": 16, "base_channels": 4}}'
sid=$(curl -fsS "${AUTH[@]}" -H 'content-type: application/json' -d "$body" \
  "$API/training/sessions" | python -c 'import json, sys; print(json.load(sys.stdin)["session_id"])')
echo "session $sid"
curl -fsS "${AUTH[@]}" -XPOST "$API/training/sessions/$sid/start" >/dev/null

status=""
for _ in $(seq 180); do
  status=$(curl -fsS "${AUTH[@]}" "$API/training/sessions/$sid" \
    | python -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  case "$status" in
    completed) break ;;
    failed) echo "session $sid failed" >&2; kubectl -n "$NS" get ts "$sid" -o yaml >&2; exit 1 ;;
  esac
  sleep 5
done
[ "$status" = completed ] || { echo "session $sid still $status" >&2; exit 1; }
kubectl -n "$NS" get ts "$sid"
# The trainer wrote its checkpoints to MinIO and the API lists them from there.
ckpts=$(curl -fsS "${AUTH[@]}" "$API/checkpoints?session_id=$sid")
echo "$ckpts"
python -c 'import json, sys; assert json.loads(sys.argv[1])["checkpoints"], "no checkpoint"' "$ckpts"
