#!/usr/bin/env bash
# The runbook's by-hand deploy, kept as the baseline for scripts/bench (do not use it for real:
# no lock, no backup, no atomic switch, no verification of the revision, no rollback).
#   manual-deploy.sh <build_dir> <user@host> <port> <ssh_key> <known_hosts> <deploy_dir> <health_url>
# Steps, timed one by one: tar czf, scp, ssh "extract in place into current", pm2 reload,
# sleep 10, curl the health URL. Prints "step seconds" lines and "total seconds".
set -euo pipefail
build=$1 target=$2 port=$3 key=$4 known=$5 deploy_dir=$6 health=$7
ssh_opts=(-i "$key" -o UserKnownHostsFile="$known" -o StrictHostKeyChecking=yes -o BatchMode=yes)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
t0=$(now); last=$t0
lap() { local t; t=$(now); printf '%s %.2f\n' "$1" "$(echo "$t - $last" | bc)"; last=$t; }

tar czf "$tmp/app.tar.gz" -C "$build" .;                                   lap "tar-czf"
scp -q -P "$port" "${ssh_opts[@]}" "$tmp/app.tar.gz" "$target:/tmp/app.tar.gz"; lap "scp"
ssh -p "$port" "${ssh_opts[@]}" "$target" \
  "cd '$deploy_dir/current' && tar xzf /tmp/app.tar.gz && rm /tmp/app.tar.gz"; lap "extract"
ssh -p "$port" "${ssh_opts[@]}" "$target" \
  "cd '$deploy_dir/current' && pm2 reload ecosystem.config.js --update-env >/dev/null"; lap "pm2-reload"
sleep 10;                                                                   lap "sleep"
curl -fsS "$health" >/dev/null;                                             lap "curl"
printf 'total %.2f\n' "$(echo "$(now) - $t0" | bc)"
