#!/usr/bin/env bash
# The compose broker (apache/kafka image): single-node KRaft with one SASL_SSL listener, SCRAM-SHA-512 users
# made at format time from the secret files, the standard authorizer with nothing allowed without an ACL
# (deploy/compose/kafka-setup.sh grants them). The same configuration as `scripts/kafka start-secure`.
set -euo pipefail
kafka_home="${KAFKA_HOME:-/opt/kafka}"
secrets="${SECRETS_DIR:-/run/secrets}"
data="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
host="${KAFKA_HOST:-kafka}"  # the name clients reach it by
bind="${KAFKA_BIND:-}"  # empty: every interface of the container
port="${KAFKA_PORT:-9092}"
controller="${KAFKA_CONTROLLER_PORT:-9093}"
config="${KAFKA_CONFIG_DIR:-/tmp/kafka-config}"

admin_password="$(cat "$secrets/kafka-admin-password")"
mkdir -p "$config" "$data"
chmod 700 "$config"  # server.properties holds the admin's password
cat >"$config/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:$controller
controller.listener.names=CONTROLLER
listeners=SASL_SSL://$bind:$port,CONTROLLER://localhost:$controller
advertised.listeners=SASL_SSL://$host:$port
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/kafka.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.crt
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=$data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
# ANONYMOUS is the controller listener's principal (localhost only, inside the container).

if [ ! -f "$data/meta.properties" ]; then
    # SCRAM users are stored in the cluster metadata: made once, when the log is formatted. To change a
    # password later: kafka-configs.sh --alter --entity-type users (docs/deploy.md).
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]")
    for stage in embed cluster producer; do
        scram+=(--add-scram "SCRAM-SHA-512=[name=facestream-$stage,password=$(cat "$secrets/kafka-$stage-password")]")
    done
    "$kafka_home/bin/kafka-storage.sh" format --cluster-id "${KAFKA_CLUSTER_ID:-$("$kafka_home/bin/kafka-storage.sh" random-uuid)}" \
        --config "$config/server.properties" "${scram[@]}" >/dev/null
fi
exec "$kafka_home/bin/kafka-server-start.sh" "$config/server.properties"
