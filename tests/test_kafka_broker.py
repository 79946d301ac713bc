"""The project's own Kafka broker works end to end with the client the workers use (groundwork for #4)."""

import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic


def test_produce_consume_and_commit_on_a_real_broker(kafka_bootstrap: str) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, key=f"camera{i % 2}", value=f"frame {i}".encode(), headers={"frame": str(i)})
    assert producer.flush(30) == 0  # nothing left undelivered

    group = f"group-{uuid.uuid4().hex}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        while len(values) < 10:
            message = consumer.poll(10)
            assert message is not None, "no message within 10 s"
            error = message.error()
            assert error is None or error.code() == KafkaError._PARTITION_EOF, error
            value = message.value()
            if error is None and value is not None:
                values.append(value)
                consumer.commit(message=message, asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    finally:
        consumer.close()
    assert sorted(values) == sorted(f"frame {i}".encode() for i in range(10))
    # A partition that received nothing has no committed offset (a negative sentinel).
    assert sum(max(tp.offset, 0) for tp in committed) == 10
