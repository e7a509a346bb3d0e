# seekrflow-exporter container image.
#
#   docker build -t seekrflow-exporter .
#   docker run -p 9878:9878 -v $PWD/config.yaml:/etc/seekrflow-exporter/config.yaml:ro \
#       -e SEEKR_API_KEY seekrflow-exporter
#
# The base image is an argument so that a build without access to Docker Hub can
# substitute a local image with the same layout (python3 + venv); the default is
# the standard slim image.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the package and its run-time dependencies into a venv ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
RUN python3 -m venv /opt/seekrflow-exporter
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# A non-editable install: the venv holds the built package, not a link to /src.
RUN /opt/seekrflow-exporter/bin/pip install --no-cache-dir '.[basic-auth]' \
    && /opt/seekrflow-exporter/bin/pip uninstall --yes pip setuptools

# --- run: only the venv, owned by root, run by an unprivileged user ---
FROM ${PYTHON_IMAGE}

# What the image was built from, for the OCI labels below. A release build passes all four:
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg SOURCE=<repository URL> .
# Left out, they stay empty (or "dev") rather than claim something the build does not know.
ARG VERSION=dev
ARG REVISION=""
ARG CREATED=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="seekrflow-exporter" \
      org.opencontainers.image.description="Prometheus exporter for SeekrFlow file-conversion (ingestion) jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin seekrflow \
    && mkdir -p /etc/seekrflow-exporter

COPY --from=build /opt/seekrflow-exporter /opt/seekrflow-exporter

ENV PATH=/opt/seekrflow-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 9878

# The slim image has no curl: the venv's Python asks /-/healthy itself. This
# follows the default port; a container started with another
# --web.listen-address port needs its own --health-cmd.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9878/-/healthy', timeout=4)"]

ENTRYPOINT ["seekrflow-exporter"]
# Inside a container the exporter must listen on every interface of the
# container's own network namespace so that a published port reaches it; the
# address is spelled out so that overriding CMD shows what to keep.
CMD ["--config.file=/etc/seekrflow-exporter/config.yaml", "--web.listen-address=0.0.0.0:9878"]
