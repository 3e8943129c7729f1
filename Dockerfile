# The PIVOT API + operator image (no torch: training runs in trainer-image/Dockerfile).
#   docker build -t pivot .
#   API:       uvicorn pivot_api.app:app --host 0.0.0.0 --port 8000   (the default command)
#   operator:  python -m pivot_operator
# Both are configured from PIVOT_* env alone (helm/pivot fills it).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- ui: the dashboard's static files (api/ui), built against the TypeScript client -------
FROM ${NODE_IMAGE} AS ui
WORKDIR /src
COPY api/clients/typescript api/clients/typescript
COPY api/ui api/ui
WORKDIR /src/api/ui
# Writes api/pivot_api/ui_dist, which the next stage copies into the package.
RUN npm ci --no-audit --no-fund && npm run build

# ---- build: the project and its dependencies into a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the API and the operator are made of: packaging metadata, the shared contracts
# (with the CRD), the operator, the API and its SDK.
COPY pyproject.toml README.md ./
COPY crds crds
COPY operator/pivot_operator operator/pivot_operator
COPY api/pivot_api api/pivot_api
COPY api/pivot_client api/pivot_client
COPY --from=ui /src/api/pivot_api/ui_dist api/pivot_api/ui_dist
# The project itself, not a registry package: its dependencies are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[api,operator]" \
    && python -c "import pivot_api.settings, pivot_operator.config, kopf, uvicorn" \
    && python -c "import pivot_api.ui as ui; assert (ui.DIST / 'index.html').is_file()" \
    && ! python -c "import torch" 2>/dev/null

# ---- runtime: the virtualenv on a clean base, as a non-root user ------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIVOT_CONFIGS_DIR=/etc/pivot/configs
COPY --from=build /opt/venv /opt/venv
COPY configs /etc/pivot/configs
# A fixed numeric uid, so `runAsNonRoot: true` can verify it without a passwd lookup.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp pivot
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8080
CMD ["uvicorn", "pivot_api.app:app", "--host", "0.0.0.0", "--port", "8000"]
