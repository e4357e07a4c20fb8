#!/usr/bin/env bash
# A self-made certificate authority and server certificates for the TLS tests (and for trying TLS locally):
#   make-ca.sh DIR NAME SUBJECT_ALT_NAMES
# creates DIR/ca.pem + DIR/ca.key (once; P-256, 2 days) and DIR/NAME.pem + DIR/NAME.key signed by it, e.g.
#   make-ca.sh /tmp/tls server "DNS:localhost,IP:127.0.0.1"
set -euo pipefail
dir=$1 name=$2 san=$3
mkdir -p "$dir"
cd "$dir"
if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=crm-ingest test CA $(date +%s%N)" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
  -subj "/CN=$name" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" >"$name.ext"
openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" -days 2 \
  -extfile "$name.ext" 2>/dev/null
rm -f "$name.csr" "$name.ext"
chmod 600 "$name.key"
