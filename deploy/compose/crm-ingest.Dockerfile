# crm-ingest image: built from this repository on Debian 12 with Debian's packages only (as on the hosts).
# docker-compose builds it with the repository as context (see nodeN.yml).
FROM debian:bookworm-20241111-slim AS build
COPY deploy/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target crm-ingest \
 && cmake --install /build --prefix /opt/crm-ingest

FROM debian:bookworm-20241111-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libpqxx-6.4 libpq5 libsimdjson14 libprometheus-cpp-core1.0 libphonenumber8 libssl3 zlib1g libspdlog1.10 \
      libtomlplusplus3 libabsl20220623 libprotobuf32 libicu72 \
      libfmt9 libjwt0 postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/crm-ingest --create-home crm-ingest
COPY --from=build /opt/crm-ingest /opt/crm-ingest
ENV PATH=/opt/crm-ingest/bin:/usr/lib/postgresql/15/bin:$PATH
USER crm-ingest
VOLUME /var/lib/crm-ingest
# Refuse to start on an invalid configuration, with every mistake listed.
ENTRYPOINT ["sh", "-c", "crm-ingest config check /etc/crm-ingest/crm-ingest.toml >/dev/null && exec crm-ingest serve --config /etc/crm-ingest/crm-ingest.toml"]
