#!/bin/sh
# Let the replica (db-replica) stream from this primary: one pg_hba line, run once by the
# postgres image's entrypoint when it creates the cluster.
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
