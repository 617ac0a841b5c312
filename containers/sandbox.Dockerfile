# The image untrusted programs run in: interpreters and compilers only, no Referee code, no secrets.
#
#   docker build --build-arg BASE=local/debian-python:bookworm -f containers/sandbox.Dockerfile \
#       -t referee-sandbox:dev containers
#
# Containers from it are started by sandbox/docker.py (or compose / Kubernetes) with no network,
# a read-only root, a tmpfs workdir, no capabilities and uid 65534; this file only has to make sure the
# image itself holds nothing worth reading and needs no root at run time.
ARG BASE=local/debian-python:bookworm
FROM ${BASE}

# Toolchains from Debian 12: python3 3.11 (already in the base), g++ 12, nodejs 18.
# coreutils gives `timeout`, which the docker backend wraps every program in.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ nodejs coreutils \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/share/doc/* /usr/share/man/*

# The workdir is a tmpfs mount at run time; the directory here is only the mount point.
RUN mkdir -p /sandbox && chown 65534:65534 /sandbox

ENV HOME=/sandbox LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
WORKDIR /sandbox
USER 65534:65534
# A warm container idles until the backend `exec`s programs into it.
CMD ["sleep", "infinity"]
