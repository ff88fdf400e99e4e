#!/bin/bash
# Boot of a video worker (Amazon Linux 2023), run by the launch template's bootstrap in
# ec2/anb.yaml from the release it downloaded to /opt/anb/release:
# Python 3.11 + the anb package in /opt/anb/venv, /etc/anb/anb.env from SSM Parameter Store and
# Secrets Manager, the RDS CA bundle, the CloudWatch agent, then these services:
#   anb-worker     `anb poll`, ANB_WORKER_CONCURRENCY jobs at once (from the CPU count)
#   anb-lifecycle  when Auto Scaling terminates the instance, stops anb-worker (which finishes
#                  the job in hand) and completes the termination lifecycle hook
#   anb-unhealthy  started when anb-worker fails for good: has Auto Scaling replace the instance
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

begin_boot worker
: "${ANB_LIFECYCLE_HOOK:?bootstrap.env must name the termination lifecycle hook}"
install_packages
create_user
start_cloudwatch_agent
install_app
fetch_rds_ca
write_app_env
# One job per two vCPUs: libx264 already uses several threads for one job.
cpus=$(nproc)
write_instance_env "ANB_WORKER_CONCURRENCY=$((cpus >= 2 ? cpus / 2 : 1))"
printf 'ANB_LIFECYCLE_HOOK=%s\nAWS_REGION=%s\nAWS_DEFAULT_REGION=%s\n' \
  "$ANB_LIFECYCLE_HOOK" "$AWS_REGION" "$AWS_REGION" >"$ANB_ETC/lifecycle.env"
install -m 0755 "$ANB_EC2_DIR/bin/anb-lifecycle" /usr/local/bin/anb-lifecycle
install_units anb-worker.service anb-lifecycle.service anb-unhealthy.service anb-journal-export@.service
systemctl enable --now anb-journal-export@anb-worker.service anb-journal-export@anb-lifecycle.service
systemctl enable --now anb-worker.service anb-lifecycle.service
sleep 15
if ! systemctl is-active --quiet anb-worker.service; then
  log "anb-worker is not running:"
  journalctl --unit=anb-worker.service --no-pager --lines=30 || true
  false
fi
end_boot "the worker polls ${ANB_STACK:-the stack}'s job queue"
