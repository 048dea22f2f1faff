# syntax=docker/dockerfile:1
# Low Carbon City Monitor: one image for every lccm process (migrate, ingest, api, simulate ...); the compose service
# picks the sub-command. Build: `docker compose build` (or `docker build -t lccm .`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its pinned dependencies into a virtualenv ----------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/lccm
WORKDIR /src
# All dependencies ship manylinux wheels (numba, llvmlite, psycopg-binary, orjson ...): no compiler needed. Only the
# runtime dependencies are installed (no extras: the image never starts embedded servers), at the versions of
# constraints.txt, which CI installs and tests too (deploy/check_wheel.py).
# What is copied is decided by .dockerignore (a whitelist: pyproject.toml, constraints.txt, lccm/ and the stage
# folders). A new stage folder needs its link in lccm/ (lccm/<stage> -> ../<stage>) and a line in .dockerignore.
COPY . .
RUN /opt/lccm/bin/pip install -c constraints.txt . \
    && /opt/lccm/bin/lccm --help > /dev/null

# --- runtime -------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="lccm" \
      org.opencontainers.image.description="Low Carbon City Monitor: live energy, emissions and air quality for Thai municipalities"

# Unprivileged user; /var/lib/lccm is LCCM_DATA_DIR (the ingest's spool and run-time files; a volume in compose, and
# a fresh named volume takes this directory's ownership).
RUN groupadd --system --gid 10001 lccm \
    && useradd --system --uid 10001 --gid lccm --home-dir /var/lib/lccm --shell /usr/sbin/nologin lccm \
    && install -d -o lccm -g lccm -m 0750 /var/lib/lccm

COPY --from=build /opt/lccm /opt/lccm

# NUMBA_CACHE_DIR: numba's on-disk cache for cache=True kernels (site-packages is not writable by the lccm user).
ENV PATH=/opt/lccm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LCCM_DATA_DIR=/var/lib/lccm \
    NUMBA_CACHE_DIR=/var/lib/lccm/numba-cache

USER lccm:lccm
WORKDIR /var/lib/lccm

ENTRYPOINT ["lccm"]
CMD ["--help"]
