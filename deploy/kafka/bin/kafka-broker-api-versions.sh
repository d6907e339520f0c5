#!/usr/bin/env bash
# paxline's minimal stand-in for Kafka's kafka-broker-api-versions.sh, so that the compose
# health check (`kafka-broker-api-versions.sh --bootstrap-server localhost:9092`) is the same
# for this image and the official one: it sends one ApiVersions request over bash's /dev/tcp
# and exits 0 when the broker answers it without error. No JVM is started (the check runs every
# 5 s). It prints nothing more than that; the full tool is in the Apache Kafka distribution.
set -euo pipefail
server=localhost:9092
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap-server) server="$2"; shift 2 ;;
    --bootstrap-server=*) server="${1#*=}"; shift ;;
    *) shift ;;
  esac
done
host="${server%:*}"; port="${server##*:}"
exec 3<>"/dev/tcp/$host/$port"
# size 12 | api_key 18 (ApiVersions) | version 0 | correlation id 7 | client id "hc"
printf '\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x07\x00\x02hc' >&3
reply="$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')"
exec 3<&-
# size (4 bytes, any) | correlation id 7 | error code 0
if [ "${reply:8:12}" = "000000070000" ]; then
  echo "$server (ApiVersions answered)"
  exit 0
fi
echo "$server did not answer ApiVersions (got '${reply}')" >&2
exit 1
