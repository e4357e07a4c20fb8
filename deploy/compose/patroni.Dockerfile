# Patroni 3.0.2 + PostgreSQL 15 from Debian 12, the same versions as the systemd layout. Runs as the
# unprivileged user postgres; data (and Patroni's pgpass) in the volume /var/lib/postgresql, the
# configuration mounted at /etc/patroni/patroni.yml (rendered by deploy/render-configs.sh).
ARG BASE_IMAGE=debian:bookworm-20241111-slim
FROM ${BASE_IMAGE}
# No "main" cluster from the package: Patroni initializes the data directory itself (bootstrap, with the
# roles of post_bootstrap) or clones it from the leader. A pre-made cluster would be taken over unbootstrapped.
# The user postgres has a fixed uid/gid (10002) so that the host can give it the mounted patroni.yml (mode
# 0600, passwords inside): `chown 10002 patroni.yml`.
RUN groupadd --system --gid 10002 postgres \
 && useradd --system --uid 10002 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
 && mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main-cluster.conf \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql-15 patroni python3-etcd python3-psycopg2 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
VOLUME /var/lib/postgresql
USER postgres
WORKDIR /var/lib/postgresql
ENTRYPOINT ["patroni", "/etc/patroni/patroni.yml"]
