#!/bin/bash
# Boot of an API server (Amazon Linux 2023), run by the launch template's bootstrap in
# ec2/anb.yaml from the release it downloaded to /opt/anb/release:
# Python 3.11 + the anb package in /opt/anb/venv, /etc/anb/anb.env from SSM Parameter Store and
# Secrets Manager, the RDS CA bundle, the CloudWatch agent, the systemd units; then `anb migrate`
# (once per boot; concurrent runs wait on PostgreSQL's advisory lock) and Gunicorn on :8000.
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

begin_boot api
install_packages
create_user
start_cloudwatch_agent
install_app
fetch_rds_ca
write_app_env
# Gunicorn workers: one per CPU (each an event loop with small thread pools for blocking work).
write_instance_env "GUNICORN_WORKERS=$(nproc)"
install_units anb-api.service anb-journal-export@.service
run_migrations
systemctl enable --now anb-journal-export@anb-api.service
systemctl enable --now anb-api.service
wait_for_http http://127.0.0.1:8000/api/health
end_boot "the API answers on :8000; the load balancer's health check (/api/health) takes it from here"
