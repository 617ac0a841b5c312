# Referee: one image, several roles, chosen by the command.
#
#   api             referee serve --host 0.0.0.0 --port 8000            (the default CMD)
#   sandbox-worker  referee sandbox-worker   (Redis-stream consumer; coming with the lead's worker)
#   grpo-worker     referee train --url http://api:8000 --device cuda   (needs torch: --build-arg EXTRAS=docker,langdetect,grpo)
#
# No registry: BASE is a local image made by .ci/build-images.sh (debootstrap + docker import).
#   docker build --build-arg BASE=local/debian-python:bookworm -t referee:dev .
# pip reaches PyPI during the build. torch is only installed through the `grpo` extra, which pins
# torch==2.13.0 (an unpinned torch would pull a multi-GB CUDA build for nothing).
ARG BASE=local/debian-python:bookworm
FROM ${BASE}

# Which extras of the distribution to install: "docker" (the SDK of the docker sandbox backend) and
# "langdetect" (the language reward) for api and sandbox-worker; add "grpo" for a GPU grpo-worker image.
ARG EXTRAS=docker,langdetect
# Debian packages the sandbox-worker role runs programs with (bubblewrap isolates each one). An image
# for the api or grpo roles alone can drop them: --build-arg TOOLCHAINS="".
ARG TOOLCHAINS="g++ nodejs bubblewrap"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/referee/bin:$PATH

RUN if [ -n "$TOOLCHAINS" ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $TOOLCHAINS \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/share/doc/* /usr/share/man/*; \
    fi
RUN python3 -m venv /opt/referee

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
COPY pyproject.toml /src/pyproject.toml
COPY containers/pyproject_requirements.py /tmp/pyproject_requirements.py
RUN python3 /tmp/pyproject_requirements.py /src/pyproject.toml > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/pyproject_requirements.py

# Then the code. --no-deps: everything it needs is already there, pinned.
# README.md* may match nothing (pyproject.toml always matches, so the COPY is valid either way).
COPY pyproject.toml README.md* /src/
COPY service /src/service
COPY verifiers /src/verifiers
COPY sandbox /src/sandbox
COPY trainer /src/trainer
RUN test -f /src/README.md || echo "Referee" > /src/README.md; \
    pip install --no-deps /src && rm -rf /src /tmp/* \
    && python -c "import service, verifiers, sandbox"

# The service never needs root: it runs as an unprivileged system user, uid 10001.
# Writable paths at run time are only tmpfs/emptyDir mounts (the root filesystem is read-only).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin referee
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["referee"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
