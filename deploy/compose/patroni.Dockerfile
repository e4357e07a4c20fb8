# Patroni 3.0.2 + PostgreSQL 15 from Debian 12, the same versions as the systemd layout.
FROM debian:bookworm-20241111-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql-15 patroni python3-etcd3 python3-psycopg2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
USER postgres
ENTRYPOINT ["patroni", "/etc/patroni/patroni.yml"]
