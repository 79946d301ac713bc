"""A forget of many faces is applied in bounded steps: the same result as at once, every face in one event,
a cluster's id kept until its last step, and a worker that dies between two steps finishes the erasure when it
reads the command again."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import numpy as np
import pytest

from clustering.corrections import ForgetFaces
from clustering.engine import OnlineRankOrder
from clustering.events import Forgotten
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings
from clustering.store import CorrectionDelta, InMemoryStore, StoreError
from tests.conftest import StoreFactory
from tests.correction_faces import DIM, add_all, look_alikes, person
from tests.synthetic_faces import settings


def stepped(step_faces: int) -> ClusteringSettings:
    return settings().model_copy(update={"erasure_step_faces": step_faces})


def filled(engine: OnlineRankOrder) -> dict[str, list[str]]:
    """Two people seen at the door and in the hall, a third in the hall only; camera -> face ids."""
    rng = np.random.default_rng(3)
    a, b = look_alikes(0.0, seed=4)
    c, _ = look_alikes(0.0, seed=5)
    door = add_all(engine, "door", person(a, 6, rng) + person(b, 5, rng))
    hall = add_all(engine, "hall", person(a, 4, rng) + person(b, 3, rng) + person(c, 6, rng), start=20)
    return {"door": door, "hall": hall}


def test_a_large_forget_in_steps_ends_as_one_forget_at_once(make_store: StoreFactory) -> None:
    at_once = OnlineRankOrder(DIM, settings(), make_store())
    in_steps = OnlineRankOrder(DIM, stepped(4), make_store())
    faces = filled(at_once)
    assert filled(in_steps) == faces

    (whole,) = at_once.correct_in_steps(ForgetFaces("door", camera="door"))
    outcomes = in_steps.correct_in_steps(ForgetFaces("door", camera="door"))

    assert isinstance(whole, Forgotten)
    assert len(outcomes) >= 3  # 11 faces, at most 4 a step
    assert all(isinstance(outcome, Forgotten) and len(outcome.faces) <= 4 for outcome in outcomes)
    ids = [outcome.command_id for outcome in outcomes]
    assert ids[-1] == "door"
    assert all(step.startswith("door@") for step in ids[:-1])
    erased = Counter(face for outcome in outcomes if isinstance(outcome, Forgotten) for face in outcome.faces)
    assert erased == Counter(faces["door"])
    assert in_steps.labels().keys() == at_once.labels().keys() == set(faces["hall"])
    assert in_steps.clusters() == at_once.clusters()
    assert OnlineRankOrder.restore(in_steps.store, DIM, stepped(4)).clusters() == at_once.clusters()
    assert in_steps.correct_in_steps(ForgetFaces("door", camera="door")) == []  # applied before


def test_a_cluster_forgotten_in_steps_keeps_its_id_until_its_last_step(make_store: StoreFactory) -> None:
    engine = OnlineRankOrder(DIM, stepped(3), make_store())
    faces = filled(engine)
    cluster = engine.cluster_of(faces["hall"][-1])
    members = [face for face, label in engine.labels().items() if engine.cluster_of(face) == cluster]
    others = engine.clusters()
    del others[cluster]

    outcomes = engine.correct_in_steps(ForgetFaces("third", cluster=cluster))

    assert len(outcomes) == 2
    first, last = outcomes
    assert isinstance(first, Forgotten)
    assert isinstance(last, Forgotten)
    assert (first.parts, first.removed) == ((), ())  # the cluster only shrank
    assert last.removed == (cluster,)
    assert sorted(first.faces + last.faces) == sorted(members)
    assert engine.labels().keys() == set(faces["door"] + faces["hall"]) - set(members)
    assert engine.clusters() == others


class DiesAfter(RedisStore):
    """A store whose process dies (its next writes never reach Redis) after ``steps`` correction writes."""

    steps = 1

    def apply_correction(self, delta: CorrectionDelta) -> bool:
        if self.steps == 0:
            raise ConnectionError("the worker died here")
        self.steps -= 1
        return super().apply_correction(delta)


def test_a_worker_that_dies_between_two_steps_finishes_the_erasure_when_it_reads_the_command_again(
    redis_url: str,
) -> None:
    space = f"test-{uuid.uuid4().hex[:12]}"
    client = connect(redis_url)
    dying_store = DiesAfter(client, space)
    dying = OnlineRankOrder(DIM, stepped(4), dying_store)
    faces = filled(dying)
    reference = OnlineRankOrder(DIM, settings(), InMemoryStore())
    filled(reference)
    reference.correct(ForgetFaces("door", camera="door"))
    command = ForgetFaces("door", camera="door")

    with pytest.raises(StoreError, match="could not persist correction door@"), dying_store.batch():
        dying.correct_in_steps(command, offset=(0, 41))
    store = RedisStore(client, space)
    assert 0 not in store.offsets()  # the command is read again
    restarted = OnlineRankOrder.restore(store, DIM, stepped(4))
    with store.batch():
        rest = restarted.correct_in_steps(command, offset=(0, 41))

    assert rest
    assert rest[-1].command_id == "door"
    assert store.offsets()[0] == 41
    assert restarted.labels().keys() == set(faces["hall"])
    assert restarted.clusters() == reference.clusters()
    events = [json.loads(entry.correction or "{}") for entry in store.outbox()]
    erased = Counter(face for event in events for face in event["faces"])
    assert erased == Counter(faces["door"]), "every face in one event, across the restart"
