# syntax=docker/dockerfile:1
# The kubeledger operator image: a wheel built from pyproject.toml (hatchling) in a build
# stage, installed into a virtualenv in a slim final stage that runs as non-root 65532
# (the UID the Helm chart enforces). Build with BuildKit:
#   docker build -t kubeledger:0.1.0 .

# One base for both stages, so the wheel's dependencies are resolved for the same Python.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Only what the wheel is built from (see also .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The wheel carries the CRD the operator installs at start-up.
COPY crds/ crds/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubeledger" \
      org.opencontainers.image.description="Tamper-evident audit trail of Kubernetes workload and RBAC changes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH="/opt/kubeledger/bin:${PATH}" \
    PYTHONUNBUFFERED=1
RUN groupadd --gid 65532 kubeledger \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kubeledger
# The wheel is bind-mounted from the build stage, so it never becomes a layer; pip
# compiles the bytecode at install time because the root filesystem is read-only at run.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/kubeledger \
    && /opt/kubeledger/bin/pip install --no-cache-dir /wheels/*.whl
USER 65532:65532
ENTRYPOINT ["kubeledger"]
CMD ["run"]
