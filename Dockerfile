# syntax=docker/dockerfile:1
# One image for every Aegis service; the command picks the service:
#   docker run IMAGE serve backend | serve engine | serve executor | db upgrade
#
# Build stage: the exact dependency set of uv.lock (runtime only, no dev group), then the
# project itself installed as a regular (non-editable) package into /opt/aegis/venv.
# Runtime stage: that venv on a slim Python, a non-root user, no build tools, no uv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Same uv as `make install` (Makefile UV_VERSION).
ARG UV_VERSION=0.13.8
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/aegis/venv
RUN pip install "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first (their layer is reused while only src/ changes).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="aegis" \
      org.opencontainers.image.description="Aegis backend, AI engine and executor" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can check it (k8s/base, helm/).
# /srv/aegis/objects: the filesystem object store's mount point in Compose (owned by aegis, so a
# new named volume mounted there is writable).
RUN groupadd --system --gid 10001 aegis \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/aegis --no-create-home \
      --shell /usr/sbin/nologin aegis \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/aegis \
 && install -d -o 10001 -g 10001 -m 0750 /srv/aegis/objects
COPY --from=build /opt/aegis/venv /opt/aegis/venv
# Bytecode is compiled at build time, so a read-only root filesystem costs nothing.
ENV PATH=/opt/aegis/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/aegis \
    AEGIS_DATA_DIR=/var/lib/aegis
USER 10001:10001
WORKDIR /var/lib/aegis
# backend (API + web console), AI engine, executor
EXPOSE 3000 8000 8080
ENTRYPOINT ["aegis"]
CMD ["serve", "backend"]
