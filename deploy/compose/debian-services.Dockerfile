# etcd, HAProxy, Prometheus and node_exporter from Debian 12's packages, for machines that cannot pull the
# upstream images the compose files pin (no registry). deploy/stack.sh builds each target and runs the same
# compose files with them (ETCD_IMAGE, HAPROXY_IMAGE, PROMETHEUS_IMAGE, NODE_EXPORTER_IMAGE). Each image
# keeps the upstream image's paths and entry point, so the compose service definitions are unchanged:
#   etcd           /usr/local/bin/etcd, data /var/lib/etcd        (Debian etcd-server 3.4; upstream v3.5)
#   haproxy        haproxy -f /usr/local/etc/haproxy/haproxy.cfg   (Debian 2.6, as upstream 2.6.18)
#   prometheus     ENTRYPOINT /bin/prometheus, data /prometheus    (Debian 2.42, as upstream v2.42.0)
#   node-exporter  ENTRYPOINT /bin/node_exporter                   (Debian 1.5; upstream v1.8.2)
# Every one runs as an unprivileged user.
ARG BASE_IMAGE=debian:bookworm-20241111-slim

FROM ${BASE_IMAGE} AS etcd
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && ln -s /usr/bin/etcd /usr/local/bin/etcd \
 && install -d -o etcd -g etcd -m 0700 /var/lib/etcd
VOLUME /var/lib/etcd
USER etcd
ENTRYPOINT []
CMD ["/usr/local/bin/etcd"]

FROM ${BASE_IMAGE} AS haproxy
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && install -d /usr/local/etc/haproxy
USER haproxy
# -W master-worker, -db in the foreground; SIGUSR2 reloads (as upstream).
ENTRYPOINT ["haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]

FROM ${BASE_IMAGE} AS prometheus
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && { [ -e /bin/prometheus ] || ln -s /usr/bin/prometheus /bin/prometheus; } \
 && install -d -o prometheus -g prometheus -m 0755 /prometheus /etc/prometheus
VOLUME /prometheus
WORKDIR /prometheus
USER prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

FROM ${BASE_IMAGE} AS node-exporter
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && { [ -e /bin/node_exporter ] || ln -s /usr/bin/prometheus-node-exporter /bin/node_exporter; }
USER nobody
ENTRYPOINT ["/bin/node_exporter"]
