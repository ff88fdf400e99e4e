#!/bin/bash
# Steps shared by api.sh and worker.sh; sourced by them, never run on its own.
#
# They run as root from cloud-init. Their input is /etc/anb/bootstrap.env, written by the
# launch template's user-data in ec2/anb.yaml before it fetched the release into /opt/anb/release:
#   ANB_ROLE              api | worker
#   AWS_REGION            the stack's region
#   ANB_CONFIG_PATH       SSM Parameter Store path of the configuration (/<stack>/config)
#   ANB_DB_SECRET_ARN     Secrets Manager secret of the PostgreSQL user ({"username", "password"})
#   ANB_JWT_SECRET_ARN    Secrets Manager secret of ANB_JWT_SECRET (API only)
#   ANB_CACHE_SECRET_ARN  optional Secrets Manager secret: the Redis AUTH token, put into ANB_CACHE_URL
#   ANB_STACK             the CloudFormation stack, and ANB_SIGNAL_RESOURCE, the logical id of
#                         this instance's Auto Scaling group: the end of the boot signals it
#   ANB_LOG_GROUP_PREFIX  CloudWatch log groups: <prefix>/api, <prefix>/worker
#   ANB_PACKAGE_SPEC      optional pip requirement installed instead of the release's wheel
#   ANB_PIP_INDEX_URL     optional package index for pip
#   ANB_RELEASE           s3:// URL the release came from (for messages)
#   ANB_LIFECYCLE_HOOK    worker only: name of the termination lifecycle hook

ANB_EC2_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ANB_EC2_DIR
# The locations below can be moved by the environment only for the tests (tests/deploy).
readonly ANB_RELEASE_DIR=${ANB_RELEASE_DIR:-/opt/anb/release}
readonly ANB_VENV=${ANB_VENV:-/opt/anb/venv}
readonly ANB_ETC=${ANB_ETC:-/etc/anb}
readonly ANB_HOME=${ANB_HOME:-/var/lib/anb}
readonly RDS_CA_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
readonly CWAGENT_DIR=/opt/aws/amazon-cloudwatch-agent
# cloud-init records the instance id here before it runs the user-data
readonly INSTANCE_ID_FILE=${ANB_INSTANCE_ID_FILE:-/var/lib/cloud/data/instance-id}

log() {
  printf '%s anb-boot: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

# Export the KEY=VALUE lines of a file, taken literally (no shell expansion of the values).
load_env_file() {
  local file=$1 line key
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -z $line || $line == \#* ]] && continue
    key=${line%%=*}
    if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      log "ignoring a malformed line of $file"
      continue
    fi
    export "$key=${line#*=}"
  done <"$file"
}

# The group's CreationPolicy and rolling UpdatePolicy wait for one signal per new instance, so
# a deployment goes green only when its instances have booted. Outside a deployment (a
# scale-out) CloudFormation waits for none and refuses the signal: that is only logged.
signal_cloudformation() {
  local status=$1
  if [[ -z ${ANB_STACK:-} || -z ${ANB_SIGNAL_RESOURCE:-} ]]; then
    return 0
  fi
  aws cloudformation signal-resource --stack-name "$ANB_STACK" \
    --logical-resource-id "$ANB_SIGNAL_RESOURCE" --unique-id "$(<"$INSTANCE_ID_FILE")" \
    --status "$status" >/dev/null ||
    log "CloudFormation did not take the $status signal (it takes none outside a deployment)"
}

# ERR trap: an instance that could not boot reports FAILURE (the deployment rolls back) and
# powers off (launched with shutdown behaviour "terminate", its Auto Scaling group replaces it).
# ANB_KEEP_FAILED_INSTANCE=1 keeps it for inspection.
boot_failed() {
  local status=$? line=$1
  trap - ERR
  log "boot FAILED (exit status $status, line $line); the boot log is in the log group" \
    "${ANB_LOG_GROUP_PREFIX:-?}/${ANB_ROLE:-?}, stream <instance id>/boot"
  signal_cloudformation FAILURE || true
  if [[ ${ANB_KEEP_FAILED_INSTANCE:-0} != 1 ]]; then
    log "powering off in 5 minutes so that Auto Scaling replaces this instance"
    shutdown -h +5 "anb boot failed" || true
  fi
  exit "$status"
}

begin_boot() {
  local role=$1
  trap 'boot_failed $LINENO' ERR
  load_env_file "$ANB_ETC/bootstrap.env"
  : "${AWS_REGION:?} ${ANB_CONFIG_PATH:?} ${ANB_DB_SECRET_ARN:?} ${ANB_LOG_GROUP_PREFIX:?}"
  if [[ ${ANB_ROLE:-} != "$role" ]]; then
    log "bootstrap.env is for role '${ANB_ROLE:-}', not '$role'"
    return 1
  fi
  export AWS_DEFAULT_REGION=$AWS_REGION
  log "booting the $role from ${ANB_RELEASE:-$ANB_RELEASE_DIR}"
}

end_boot() {
  log "$*"
  signal_cloudformation SUCCESS
}

install_packages() {
  local packages=(python3.11 python3.11-pip amazon-cloudwatch-agent logrotate)
  if [[ ${ANB_PACKAGE_SPEC:-} == *git+* ]]; then
    packages+=(git)
  fi
  log "installing ${packages[*]}"
  dnf install -y -q "${packages[@]}"
}

create_user() {
  if ! id anb >/dev/null 2>&1; then
    useradd --system --home-dir "$ANB_HOME" --no-create-home --shell /sbin/nologin anb
  fi
  install -d -o anb -g anb -m 0750 "$ANB_HOME" "$ANB_HOME/tmp"
  install -d -m 0755 /var/log/anb
}

# The agent starts first so that the rest of the boot log already reaches CloudWatch.
start_cloudwatch_agent() {
  local config=$CWAGENT_DIR/etc/anb.json
  sed -e "s|@LOG_GROUP_PREFIX@|$ANB_LOG_GROUP_PREFIX|g" -e "s|@ROLE@|$ANB_ROLE|g" \
    "$ANB_EC2_DIR/cloudwatch-agent.json" >"$config"
  "$CWAGENT_DIR/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -s -c "file:$config"
}

# The release's wheel with the dependency wheels it ships (no package index: the boot does not
# depend on PyPI), or ANB_PACKAGE_SPEC from a package index if set; into a venv.
install_app() {
  local pip_args=() requirement wheels
  if [[ -n ${ANB_PACKAGE_SPEC:-} ]]; then
    requirement=$ANB_PACKAGE_SPEC
    if [[ -n ${ANB_PIP_INDEX_URL:-} ]]; then
      pip_args+=(--index-url "$ANB_PIP_INDEX_URL")
    fi
  else
    wheels=("$ANB_RELEASE_DIR"/anb-*.whl)
    if [[ ${#wheels[@]} -ne 1 || ! -f ${wheels[0]} || ! -d $ANB_RELEASE_DIR/wheels ]]; then
      log "expected one anb-*.whl and wheels/ in $ANB_RELEASE_DIR (from ${ANB_RELEASE:-?})"
      return 1
    fi
    requirement=${wheels[0]}
    pip_args+=(--no-index --find-links "$ANB_RELEASE_DIR/wheels")
  fi
  log "installing $requirement into $ANB_VENV"
  python3.11 -m venv "$ANB_VENV"
  "$ANB_VENV/bin/pip" install --quiet --disable-pip-version-check "${pip_args[@]}" "$requirement"
  "$ANB_VENV/bin/anb" --help >/dev/null
}

# AWS's trust store for RDS: ANB_DATABASE_CA_FILE points here, for verified TLS to PostgreSQL.
fetch_rds_ca() {
  local target=$ANB_ETC/rds-ca.pem
  curl -fsSL --retry 5 --retry-connrefused --max-time 60 -o "$target.download" "$RDS_CA_URL"
  if ! grep -q 'BEGIN CERTIFICATE' "$target.download"; then
    log "$RDS_CA_URL did not return certificates"
    return 1
  fi
  chmod 0644 "$target.download"
  mv -f "$target.download" "$target"
}

ssm_value() {
  aws ssm get-parameter --name "$ANB_CONFIG_PATH/$1" --query Parameter.Value --output text
}

secret_string() {
  aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text
}

# Every parameter under <config path>/env, as NAME=value lines.
config_lines() {
  aws ssm get-parameters-by-path --path "$ANB_CONFIG_PATH/env" \
    --query 'Parameters[].[Name,Value]' --output text |
    while IFS=$'\t' read -r name value; do
      printf '%s=%s\n' "${name##*/}" "$value"
    done
}

database_url() {
  local host port name
  host=$(ssm_value db/host)
  port=$(ssm_value db/port)
  name=$(ssm_value db/name)
  secret_string "$ANB_DB_SECRET_ARN" | "$ANB_VENV/bin/python" -c '
import json, sys
from urllib.parse import quote

secret = json.load(sys.stdin)
user, password = (quote(secret[key], safe="") for key in ("username", "password"))
host, port, name = sys.argv[1:]
print(f"postgresql+pg8000://{user}:{password}@{host}:{port}/{name}")
' "$host" "$port" "$name"
}

# The cache URL with the Redis AUTH token of ANB_CACHE_SECRET_ARN as its password.
cache_url_with_token() {
  secret_string "$ANB_CACHE_SECRET_ARN" | "$ANB_VENV/bin/python" -c '
import sys
from urllib.parse import quote, urlsplit

token = quote(sys.stdin.read().strip(), safe="")
url = urlsplit(sys.argv[1])
print(url._replace(netloc=f":{token}@{url.hostname}:{url.port}").geturl())
' "$1"
}

# /etc/anb/anb.env (root:anb 0640): the services' EnvironmentFile.
write_app_env() {
  local target=$ANB_ETC/anb.env draft config url jwt="" key cache
  config=$(config_lines)
  cache=$(sed -n 's/^ANB_CACHE_URL=//p' <<<"$config")
  if [[ -n ${ANB_CACHE_SECRET_ARN:-} && -n $cache ]]; then
    cache=$(cache_url_with_token "$cache")
    config=$(sed '/^ANB_CACHE_URL=/d' <<<"$config")$'\n'"ANB_CACHE_URL=$cache"
  fi
  url=$(database_url)
  if [[ -n ${ANB_JWT_SECRET_ARN:-} ]]; then
    jwt=$(secret_string "$ANB_JWT_SECRET_ARN")
  fi
  draft=$(mktemp "$ANB_ETC/.anb.env.XXXXXX")
  {
    printf '# Written at boot by ec2/user-data from SSM %s and Secrets Manager.\n' "$ANB_CONFIG_PATH"
    printf '%s\n' "$config"
    printf 'AWS_REGION=%s\nAWS_DEFAULT_REGION=%s\n' "$AWS_REGION" "$AWS_REGION"
    printf 'ANB_DATABASE_URL=%s\n' "$url"
    if [[ -n $jwt ]]; then
      printf 'ANB_JWT_SECRET=%s\n' "$jwt"
    fi
  } >"$draft"
  for key in ANB_DATABASE_URL ANB_STORAGE_URL ANB_QUEUE_URL ANB_CACHE_URL ANB_DATA_DIR; do
    if ! grep -q "^$key=." "$draft"; then
      log "$key is missing from the configuration (SSM $ANB_CONFIG_PATH)"
      rm -f "$draft"
      return 1
    fi
  done
  chown root:anb "$draft"
  chmod 0640 "$draft"
  mv -f "$draft" "$target"
  log "wrote $target"
}

# /etc/anb/instance.env: values of this machine (read after anb.env, so they win).
write_instance_env() {
  printf '%s\n' "$@" >"$ANB_ETC/instance.env"
  chmod 0644 "$ANB_ETC/instance.env"
}

install_units() {
  local unit
  for unit in "$@"; do
    install -m 0644 "$ANB_EC2_DIR/systemd/$unit" /etc/systemd/system/
  done
  install -m 0644 "$ANB_EC2_DIR/logrotate/anb" /etc/logrotate.d/anb
  systemctl daemon-reload
}

# anb migrate as the anb user with the services' environment (retried: it is idempotent and
# takes an advisory lock, so instances booting together are safe).
run_migrations() {
  local attempt
  for attempt in 1 2 3 4 5; do
    if systemd-run --quiet --wait --pipe --collect --uid=anb --gid=anb \
      --property=EnvironmentFile="$ANB_ETC/anb.env" --property=WorkingDirectory="$ANB_HOME" \
      "$ANB_VENV/bin/anb" migrate; then
      return 0
    fi
    log "anb migrate failed (attempt $attempt of 5)"
    sleep 15
  done
  return 1
}

wait_for_http() {
  local url=$1
  for _ in $(seq 60); do
    if curl -fsS -o /dev/null --max-time 2 "$url"; then
      return 0
    fi
    sleep 2
  done
  log "$url did not answer within 2 minutes"
  return 1
}
