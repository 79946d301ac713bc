"""Frames that killed embed workers: the marks a dying worker leaves on its partitions' commits, read by the
next owner, which runs the suspects one at a time and dead-letters a frame that killed two workers; on the
real broker, a worker given a partition as two dead workers left it serves every frame but that one."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.frame_headers import FrameHeaders
from streaming.messages import DeadLetter, FaceRecord, parse_faces_topic
from tests.local_services import fresh_kafka, wait_for
from tests.streams import committed_offsets, read_all
from workers.embed.commit_points import parse_metadata
from workers.embed.embed_worker import EmbedWorker
from workers.plumbing.crash_guard import CrashMarks, Trying, Verdict, groups, parse_trying, with_trying
from workers.settings import Settings


def test_a_mark_counts_the_deaths_in_its_range_and_a_lone_frame_that_killed_two_is_refused() -> None:
    marks = CrashMarks("frames")
    assert marks.mark(0, 10, 17) == Trying(10, 17, 1)  # nothing found: the first death would make it 1
    marks.assigned(0, with_trying('{"resume":{"door":12}}', Trying(10, 17, 1)))
    assert [marks.verdict(0, offset) for offset in (9, 10, 17, 18)] == [
        Verdict.RUN,
        Verdict.ALONE,
        Verdict.ALONE,
        Verdict.RUN,
    ]
    assert marks.mark(0, 13, 13) == Trying(13, 13, 2)  # run alone inside the range a worker died in
    marks.assigned(0, with_trying("", Trying(13, 13, 2)))
    assert marks.verdict(0, 13) is Verdict.REFUSE
    marks.assigned(0, with_trying("", Trying(13, 13, 1)))  # one death only (perhaps a node lost): once more
    assert marks.verdict(0, 13) is Verdict.ALONE
    assert marks.mark(0, 20, 27) == Trying(20, 27, 1)  # past the range: it ran through
    assert marks.verdict(0, 13) is Verdict.RUN


def test_a_mark_keeps_the_resume_map_and_a_foreign_metadata_is_no_mark() -> None:
    metadata = with_trying('{"resume":{"door":12}}', Trying(3, 9, 2))
    assert parse_metadata(metadata) == {"door": 12}
    assert parse_trying(metadata) == Trying(3, 9, 2)
    assert parse_trying('{"resume":{}}') is None
    assert parse_trying("not json") is None
    assert parse_trying('{"trying": [1, "x"]}') is None


def test_suspects_run_alone_between_the_groups_of_the_others() -> None:
    run, alone, refuse = Verdict.RUN, Verdict.ALONE, Verdict.REFUSE
    verdicts = [run, run, alone, alone, refuse, run, alone, run]
    assert list(groups(verdicts)) == [[0, 1], [2], [3], [5], [6], [7]]


def test_a_worker_given_a_partition_two_dead_workers_left_refuses_their_frame_and_serves_the_rest(
    kafka_bootstrap: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    photo = sample_images()[0].read_bytes()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for frame in range(6):
        headers = FrameHeaders(camera="door", frame=frame, timestamp=float(frame)).to_kafka()
        producer.produce(kafka.frames_topic, key=b"door", value=photo, headers=headers)
    assert producer.flush(30) == 0
    group = f"embed-{uuid.uuid4().hex[:8]}"
    # What two workers that died on frame 3 (alone, the second time) leave behind: a commit at 0, marked.
    dead = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    marked = TopicPartition(kafka.frames_topic, 0, 0, metadata=with_trying("", Trying(3, 3, 2)))
    dead.commit(offsets=[marked], asynchronous=False)
    dead.close()

    worker = EmbedWorker(Settings(models=cpu_models, kafka=kafka), analyzer, group=group)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop.is_set,), daemon=True)
    thread.start()
    wait_for(lambda: worker.pipeline.counters.frames + sum(worker.dead_letters.values()) >= 6, 120, "every frame")
    wait_for(lambda: committed_offsets(kafka_bootstrap, group, kafka.frames_topic, 1) == [6], 30, "the commit")
    stop.set()
    thread.join(timeout=60)

    letters = [DeadLetter.from_json(value) for _, value in read_all(kafka_bootstrap, kafka.dead_letter_topic)]
    assert [(letter.reason, letter.offset) for letter in letters] == [("crashed_worker", 3)]
    records = [parse_faces_topic(value) for _, value in read_all(kafka_bootstrap, kafka.faces_topic)]
    frames = {record.frame for record in records if isinstance(record, FaceRecord)}
    assert 3 not in frames
    assert frames <= {0, 1, 2, 4, 5}
    assert frames
    # The last commit carries no mark: a clean finish leaves nothing for the next owner to suspect.
    check = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    (position,) = check.committed([TopicPartition(kafka.frames_topic, 0)], timeout=10)
    check.close()
    assert parse_trying(position.metadata) is None
