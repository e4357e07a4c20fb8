# crm-ingest image: built from this repository on Debian 12 with Debian's packages only (as on the hosts).
# docker-compose builds it with the repository as context (see nodeN.yml); deploy/stack.sh builds it with
# podman or docker. deploy/stack.sh --binary instead builds `--target runtime` and adds a binary compiled on the
# host with crm-ingest-prebuilt.Dockerfile (quick test cycles; same runtime). Stages:
#   runtime   Debian 12 + the shared libraries crm-ingest links, postgresql-client-15 (pg_dump/pg_restore for
#             `partitions retain`) and curl (the /readyz health check); user crm-ingest (uid 10001), no root.
#   build     the compiler and -dev packages; compiles crm-ingest from the context (Release, no tests).
#   (last)    runtime + the binary from `build`: the default target, what compose and production use.
# The base is a build argument so that a machine without a registry can use a Debian 12 image it made
# itself (deploy/stack.sh: mmdebstrap + import); the default is Debian's pinned slim image.
ARG BASE_IMAGE=debian:bookworm-20241111-slim

FROM ${BASE_IMAGE} AS runtime
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libpqxx-6.4 libpq5 librdkafka1 libsimdjson14 libprometheus-cpp-core1.0 \
      libphonenumber8 libicu72 libssl3 zlib1g libspdlog1.10 libfmt9 libtomlplusplus3 libjwt0 \
      postgresql-client-15 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 crm-ingest \
 && useradd --system --uid 10001 --gid crm-ingest --home-dir /var/lib/crm-ingest --shell /usr/sbin/nologin crm-ingest \
 && install -d -o crm-ingest -g crm-ingest -m 0750 /var/lib/crm-ingest /var/lib/crm-ingest/log \
 && install -d -m 0755 /etc/crm-ingest
COPY deploy/compose/crm-ingest-entrypoint.sh /usr/local/bin/crm-ingest-entrypoint
COPY deploy/compose/crm-ingest-healthcheck.sh /usr/local/bin/crm-ingest-healthcheck
ENV PATH=/opt/crm-ingest/bin:/usr/lib/postgresql/15/bin:$PATH
# The durable local log (and nothing else) is written: the root file system may be mounted read-only.
VOLUME /var/lib/crm-ingest
WORKDIR /var/lib/crm-ingest
USER 10001:10001
# Refuses to start on an invalid configuration (every mistake listed), then `exec crm-ingest serve`.
ENTRYPOINT ["/usr/local/bin/crm-ingest-entrypoint"]
CMD ["serve", "--config", "/etc/crm-ingest/crm-ingest.toml"]
# Ready = database reachable and the local log below its high-water mark (GET /readyz on the configured listener).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/crm-ingest-healthcheck"]

FROM ${BASE_IMAGE} AS build
COPY deploy/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCRM_INGEST_BENCH=OFF \
 && cmake --build /build --target crm-ingest \
 && install -D -s -m 0755 /build/ingest/crm-ingest /opt/crm-ingest/bin/crm-ingest

FROM runtime
COPY --from=build /opt/crm-ingest /opt/crm-ingest
RUN ! ldd /opt/crm-ingest/bin/crm-ingest | grep 'not found' && crm-ingest --version
