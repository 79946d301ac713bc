#!/usr/bin/env bash
# The compose deployment's topics, and each principal's rights and no more (docs/operations.md, Security).
# Runs once, as the broker's admin, after the broker is healthy; running it again changes nothing.
set -euo pipefail
kafka_home="${KAFKA_HOME:-/opt/kafka}"
bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
secrets="${SECRETS_DIR:-/run/secrets}"
bin="$kafka_home/bin"

admin="$(mktemp)"  # the admin client's configuration: it holds the password, so it is private and removed
trap 'rm -f "$admin"' EXIT
cat >"$admin" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$secrets/kafka-admin-password")";
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.crt
PROPS

for attempt in $(seq 1 60); do  # the broker may still be starting
    "$bin/kafka-broker-api-versions.sh" --bootstrap-server "$bootstrap" --command-config "$admin" >/dev/null 2>&1 && break
    [ "$attempt" -lt 60 ] || { echo "kafka-setup: no broker answered at $bootstrap within 2 minutes" >&2; exit 1; }
    sleep 2
done

for spec in facestream.frames:6 facestream.faces:6 facestream.identities:1 facestream.dead-letters:1 facestream.commands:1; do
    "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --create --if-not-exists \
        --topic "${spec%%:*}" --partitions "${spec##*:}" --replication-factor 1 >/dev/null
done

allow() {  # PRINCIPAL OPERATION RESOURCE-OPTIONS...
    local principal="$1" operation="$2"
    shift 2
    "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --add --force \
        --allow-principal "User:$principal" --operation "$operation" "$@" >/dev/null
}
allow facestream-producer Write --topic facestream.frames
allow facestream-embed Read --topic facestream.frames
allow facestream-embed Read --group facestream-embed
allow facestream-embed Write --topic facestream.faces
allow facestream-embed Write --topic facestream.dead-letters
allow facestream-cluster Read --topic facestream.faces
allow facestream-cluster Read --topic facestream.commands
allow facestream-cluster Write --topic facestream.faces  # commands are forwarded into their space's faces
allow facestream-cluster Read --group facestream-cluster
allow facestream-cluster Write --topic facestream.identities
allow facestream-cluster Write --topic facestream.dead-letters
allow facestream-cluster Write --transactional-id facestream-cluster- --resource-pattern-type prefixed
echo "topics and ACLs in place at $bootstrap"
