# Redis from Debian 12, for compose on hosts without an image registry (.ci/build-images.sh builds it).
ARG BASE=local/debian-python:bookworm
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /usr/share/doc/* /usr/share/man/*
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
# No persistence: the cache can be recomputed. volatile-lru evicts only keys with a TTL (cache entries),
# never streams. protected-mode off because it listens on a private compose network only.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", \
     "--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru"]
