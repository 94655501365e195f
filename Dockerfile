# syntax=docker/dockerfile:1
# egress-sidecar: the same Python minor and the same pinned dependencies CI tests
# (constraints.txt). Final stage: no compilers, no pip caches, numeric non-root user,
# read-only root filesystem friendly (state and CA material live on mounted volumes).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY sidecar ./sidecar
COPY addons ./addons
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile -c constraints.txt . \
    && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="egress-sidecar" \
      org.opencontainers.image.description="Forward proxy that scans and enforces what AI agents send" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/run/egress-sidecar \
    SIDECAR_CONFDIR=/var/run/egress-sidecar \
    SIDECAR_LISTEN=127.0.0.1:8080
USER 10001:10001
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# Exec form: the sidecar is PID 1 and handles SIGTERM itself (drain, flush, exit 0).
ENTRYPOINT ["egress-sidecar"]
CMD ["run"]

# Optional, for enforced mode only: redirects the pod's outbound TCP to the sidecar's
# transparent listener. Needs NET_ADMIN/NET_RAW at init time (Pod Security: privileged).
FROM ${PYTHON_IMAGE} AS redirect-init
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables=1.8.9-2 \
    && rm -rf /var/lib/apt/lists/*
COPY k8s/components/enforced-redirect/redirect.sh /usr/local/bin/egress-redirect
ENTRYPOINT ["/usr/local/bin/egress-redirect"]

FROM runtime
