# crm-ingest image from a binary compiled on this Debian 12 host (deploy/stack.sh --binary): the `runtime` stage of
# crm-ingest.Dockerfile (built first, tagged RUNTIME_IMAGE) plus the binary, debug info stripped. The context
# holds only the binary. Same image as the compiled-in one otherwise; kept out of crm-ingest.Dockerfile so
# that a builder building every stage (docker-compose's classic builder) never needs a binary there.
ARG RUNTIME_IMAGE=twincigo/crm-ingest-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
COPY crm-ingest /opt/crm-ingest/bin/crm-ingest
# Fails the build when a shared library of the binary is not in the image.
RUN ! ldd /opt/crm-ingest/bin/crm-ingest | grep 'not found' && crm-ingest --version
