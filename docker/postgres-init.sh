#!/bin/bash
# First start of the PostgreSQL container: a database for Airflow's metadata and one for
# the warehouse, each with its own owner. Passwords come from the container environment.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
create role airflow login password '${POSTGRES_PASSWORD}';
create database airflow owner airflow;
create role crm login password '${CRM_WAREHOUSE_PASSWORD}';
create database warehouse owner crm;
SQL
