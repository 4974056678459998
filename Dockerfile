# syntax=docker/dockerfile:1
# The kubeledger operator image: a wheel built from pyproject.toml (hatchling) in a build
# stage, installed into a virtualenv in a slim final stage that runs as non-root 65532
# (the UID the Helm chart enforces). Build with BuildKit:
#   docker build -t kubeledger:0.1.0 .
#
# Build arguments, both optional; the defaults need nothing but Docker Hub and PyPI:
#   BASE_IMAGE  the Debian-based Python 3.11+ image both stages start from. It needs
#               `python3 -m venv` with ensurepip (Debian's python3-venv) and, for the user
#               below, groupadd/useradd (Debian's passwd).
#   PIP_CERT    a CA bundle, inside the build, that pip should trust instead of its own,
#               for a TLS-intercepting proxy in front of PyPI. Mount the file for the build,
#               e.g. with buildah:
#                 buildah bud -v /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro \
#                   --build-arg PIP_CERT=/run/build-ca.crt ...
#               Only RUN steps see it: it is neither a layer nor part of the image's config.
# The local test stack builds this file with buildah on a Debian base of its own, made with
# debootstrap (tests/stack/operator_image.py), because no registry of base images is reachable.

# One base for both stages, so the wheel's dependencies are resolved for the same Python.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_CERT
WORKDIR /src
# Only what the wheel is built from (see also .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The wheel carries the CRD the operator installs at start-up.
COPY crds/ crds/
# pip from a virtualenv: Debian's system Python has none without python3-pip.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ARG PIP_CERT
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
    python3 -m venv /opt/kubeledger \
    && /opt/kubeledger/bin/pip install --no-cache-dir /wheels/*.whl
# Set only now, so it cannot keep pip from compiling: at run time Python writes nothing.
ENV PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["kubeledger"]
CMD ["run"]
