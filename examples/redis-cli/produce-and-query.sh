#!/usr/bin/env bash
# pheromone from the shell with redis-cli alone (docs/WIRE.md): emit one pattern observation onto the ingest
# stream, then ask the query service for the workspace's events. Prints the event id, then the reply's JSON.
#   PHEROMONE_REDIS_URL=redis://localhost:6379/0 ./produce-and-query.sh [workspace]
# REDIS_CLI names the client (default redis-cli; valkey-cli speaks the same protocol).
set -euo pipefail
url=${PHEROMONE_REDIS_URL:-redis://localhost:6379/0}
prefix=${PHEROMONE_PREFIX:-pheromone}
workspace=${1:-shell-ws}
cli=(${REDIS_CLI:-redis-cli} -u "$url" --no-auth-warning)

# An event id is a ULID: 10 Crockford base32 characters of milliseconds, then 16 random ones. Any other
# alphabet (I, L, O, U) or length is dead-lettered by the store.
alphabet=0123456789ABCDEFGHJKMNPQRSTVWXYZ
ms=$(date +%s%3N)
id=""
for _ in $(seq 10); do id="${alphabet:$((ms % 32)):1}$id"; ms=$((ms / 32)); done
for _ in $(seq 16); do id="$id${alphabet:$((RANDOM % 32)):1}"; done

now=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
envelope=$(printf '{"schema_version":1,"event_id":"%s","occurred_at":"%s","workspace":"%s","job":"shell-job",'\
'"payload":{"type":"pattern_observed","pattern_type":"retry_pattern","pattern_name":"back off from the shell",'\
'"context_tags":["shell"]}}' "$id" "$now" "$workspace")
"${cli[@]}" XADD "{$prefix}:ingest" '*' e "$envelope" k pattern_observed >/dev/null
echo "$id"

# A query: RPUSH the request, BLPOP the one-off reply list it names (32 hex digits, new per request).
reply="{$prefix}:reply:$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
request=$(printf '{"op":"events","args":{"workspace":"%s","kinds":["pattern_observed"]},"reply":"%s"}' \
  "$workspace" "$reply")
"${cli[@]}" RPUSH "{$prefix}:queries" "$request" >/dev/null
"${cli[@]}" --raw BLPOP "$reply" 10 | tail -n 1
