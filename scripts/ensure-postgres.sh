#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL answers at 127.0.0.1:5432 (the migration tests use it).
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432; then exit 0; fi
cluster_version=$(ls /etc/postgresql | sort -V | tail -1)
pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
echo "error: PostgreSQL at 127.0.0.1:5432 did not come up" >&2
exit 1
