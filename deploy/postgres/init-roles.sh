#!/bin/sh
# Run once by the postgres image on the first start of an empty data volume (/docker-entrypoint-initdb.d):
# a role for Temporal (auto-setup creates its databases temporal and temporal_visibility itself) and a role and
# database for closeloop. The passwords come from the container's environment (deploy/.env).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v temporal_password="$TEMPORAL_DB_PASSWORD" -v closeloop_password="$CLOSELOOP_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
CREATE ROLE closeloop LOGIN PASSWORD :'closeloop_password';
CREATE DATABASE closeloop OWNER closeloop;
SQL
