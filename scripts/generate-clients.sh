#!/usr/bin/env bash
# Regenerates the clients' half of the API contract from the OpenAPI document of a running API
# (PIVOT_URL, default http://localhost:8000; `pivot up` or `scripts/dev.sh demo` starts one):
#   api/pivot_client/_generated/   the Python SDK's models and request specs
#   api/clients/typescript/src/openapi.ts   the TypeScript client's types
# tests/integration/client/test_contract.py fails until this runs after an endpoint changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PIVOT_VENV:-.venv}
export PIVOT_URL=${PIVOT_URL:-http://localhost:8000}

"$VENV/bin/python" -m pivot_client._codegen generate
(cd api/clients/typescript && npm run --silent generate)
