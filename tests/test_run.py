"""`facestream run`: outputs a person and a program can read, bad input counted, Ctrl-C honoured."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.sources import FrameSource
from tests.conftest import data_dir
from workers.cli import main
from workers.plumbing.lifecycle import StopFlag
from workers.produce.source_readers import PlannedReaders, readers_of
from workers.run.corrections_file import CorrectionsFileError, read_corrections
from workers.run.run_job import run_pipeline
from workers.settings import Settings


def _readers(*sources: FrameSource) -> PlannedReaders:
    return readers_of(list(sources), Settings())


def _settings(models: ModelSettings) -> Settings:
    return Settings(models=models)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_run_writes_faces_clusters_and_gallery(
    tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    video = data_dir("videos", "short_hamilton_clip.mp4")
    summary = run_pipeline(
        readers_of([FrameSource(str(video))], _settings(cpu_models)),
        tmp_path,
        _settings(cpu_models),
        analyzer=analyzer,
        progress=False,
    )
    faces = _lines(tmp_path / "faces.jsonl")
    assert summary.frames == 275
    assert len(faces) == summary.faces > 275
    frames_with_faces = {f["frame"] for f in faces}
    assert len(frames_with_faces) > 0.8 * summary.frames
    clustered = [f for f in faces if f["embedded"]]
    assert all(f["rejected"] is None and f["cluster"] is not None for f in clustered)
    assert len(clustered) < len(faces) / 5  # a track embeds a few of its faces, not every one
    # Every face is on a track; a track's faces that were not embedded take the track's cluster.
    assert all(f["track"] for f in faces)
    appearances = _lines(tmp_path / "appearances.jsonl")
    assert {a["track"] for a in appearances} == {f["track"] for f in faces}
    assert sum(int(str(a["faces"])) for a in appearances) == len(faces)
    cluster_of_track = {a["track"]: a["cluster"] for a in appearances}
    assert all(f["cluster"] == cluster_of_track[f["track"]] for f in faces if f["cluster"] is not None)
    assert all(str(f["face_id"]).startswith(f"short_hamilton_clip:{f['frame']}:") for f in faces)
    assert len({f["face_id"] for f in faces}) == len(faces)

    document = json.loads((tmp_path / "clusters.json").read_text())
    clusters = document["clusters"]
    assert sum(c["size"] for c in clusters) == len(clustered)
    assert {c["id"] for c in clusters} == {f["cluster"] for f in clustered}
    assert clusters == sorted(clusters, key=lambda c: -c["size"])
    biggest = clusters[0]
    in_biggest = sum(int(str(a["faces"])) for a in appearances if a["cluster"] == biggest["id"])
    assert in_biggest > 100  # the performer on stage is in most frames
    assert biggest["appearances"] >= 1
    assert set(biggest["representatives"]) <= {f["face_id"] for f in clustered if f["cluster"] == biggest["id"]}

    page = (tmp_path / "index.html").read_text()
    assert page.count("<section") == len(clusters)
    first_thumb = page.split('<img src="', 1)[1].split('"', 1)[0]
    assert (tmp_path / first_thumb).is_file()


def test_a_folder_with_bad_files_is_counted_not_fatal(
    tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for sample in sample_images():
        shutil.copy(sample, photos / sample.name)
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "broken.jpg").write_bytes(sample_images()[0].read_bytes()[:2000])
    (photos / "fake.png").write_bytes(b"<html>not an image</html>")
    out = tmp_path / "out"
    summary = run_pipeline(
        readers_of([FrameSource(str(photos))], _settings(cpu_models)),
        out,
        _settings(cpu_models),
        analyzer=analyzer,
        progress=False,
    )
    assert summary.bad_inputs == {"empty": 1, "corrupt": 1, "not_image": 1}
    assert summary.frames == 3
    assert summary.faces >= 8
    faces = _lines(out / "faces.jsonl")
    assert {Path(str(f["image"])).name for f in faces} == {"players.jpg", "yaoming.jpg", "gdp.jpg"}
    # Photos are not video: each is detected on its own and every accepted face embedded, none tracked.
    assert all(f["track"] is None for f in faces)
    assert all(f["embedded"] == (f["rejected"] is None) for f in faces)
    assert json.loads((out / "clusters.json").read_text())["summary"]["bad_inputs"] == summary.bad_inputs


def test_a_stop_request_ends_early_and_still_writes_everything(
    tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    video = data_dir("videos", "intel_head-pose-face-detection-female.mp4")
    stop = StopFlag()
    stop.set()  # as if Ctrl-C came during the first batch
    summary = run_pipeline(
        readers_of([FrameSource(str(video))], _settings(cpu_models)),
        tmp_path,
        _settings(cpu_models),
        analyzer=analyzer,
        stop=stop,
        progress=False,
    )
    assert summary.stopped_early
    assert summary.frames == _settings(cpu_models).run.batch_size
    assert len(_lines(tmp_path / "faces.jsonl")) == summary.faces
    assert "stopped early" in (tmp_path / "index.html").read_text()


def test_cli_runs_the_sample_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESTREAM_MODELS__RUNTIME__CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", "--sample", "--cpu", "--no-progress", "-o", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("done: 3 frames,")
    assert (tmp_path / "out" / "index.html").is_file()


def test_cli_explains_bad_sources_and_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["run", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out")]) == 1
    assert "is not a folder, a file" in caplog.text
    assert main(["run", "--no-progress"]) == 2
    monkeypatch.setenv("FACESTREAM_MODELS__DETECTOR__SCORE_THRESHOLD", "7")
    assert main(["run", "--sample"]) == 2
    assert "invalid configuration" in caplog.text


def test_ctrl_c_finishes_the_batch_and_writes_the_outputs(tmp_path: Path) -> None:
    video = data_dir("videos", "short_hamilton_clip.mp4")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "workers.cli", "run", str(video), "-o", str(out), "--cpu", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "faces.jsonl").exists() or not (out / "faces.jsonl").read_text():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stdout.startswith("stopped early:")
    assert "finishing the current batch" in stderr
    document = json.loads((out / "clusters.json").read_text())
    assert document["summary"]["stopped_early"] is True
    assert 0 < document["summary"]["frames"] < 275
    assert len(_lines(out / "faces.jsonl")) == document["summary"]["faces"]


def test_corrections_of_one_run_are_respected_by_the_next(
    tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    sources = [FrameSource(str(path)) for path in sample_images()]
    first = tmp_path / "first"
    run_pipeline(
        readers_of(sources, _settings(cpu_models)), first, _settings(cpu_models), analyzer=analyzer, progress=False
    )
    clusters = json.loads((first / "clusters.json").read_text())["clusters"]
    group = next(c for c in clusters if c["size"] >= 2)
    faces = [f["face_id"] for f in _lines(first / "faces.jsonl") if f["cluster"] == group["id"]]
    # Two people of two different photos (faces of one photo are different people: a merge of those conflicts).
    photo_of = {c["id"]: c["sources"][0] for c in clusters if c["size"] == 1}
    singles = [next(iter(photo_of))]
    singles.append(next(c for c, photo in photo_of.items() if photo != photo_of[singles[0]]))
    erased = next(c["representatives"][0] for c in clusters if c["size"] == 1 and c["id"] not in singles)
    corrections = tmp_path / "corrections.jsonl"
    corrections.write_text(
        "# made from the first run's gallery\n"
        + json.dumps({"type": "reject", "face": faces[-1], "cluster": group["id"]})
        + "\n"
        + json.dumps({"type": "label", "cluster": group["id"], "name": "Guest of honour"})
        + "\n\n"
        + json.dumps({"type": "merge", "clusters": singles})
        + "\n"
        + json.dumps({"type": "forget", "faces": [erased]})
        + "\n"
    )

    second = tmp_path / "second"
    lines = read_corrections(corrections)
    summary = run_pipeline(
        readers_of(sources, _settings(cpu_models)),
        second,
        _settings(cpu_models),
        analyzer=analyzer,
        progress=False,
        corrections=lines,
    )
    assert summary.corrections == {"applied": 4}
    assigned = {f["face_id"]: f["cluster"] for f in _lines(second / "faces.jsonl")}
    assert assigned[faces[-1]] != assigned[faces[0]] == group["id"]
    merged = {assigned[f["face_id"]] for f in _lines(first / "faces.jsonl") if f["cluster"] in singles}
    assert len(merged) == 1
    named = {c["id"]: c["name"] for c in json.loads((second / "clusters.json").read_text())["clusters"]}
    assert named[group["id"]] == "Guest of honour"
    gallery = (second / "index.html").read_text()
    assert f"Cluster {group['id']}: Guest of honour" in gallery
    assert f'title="{faces[0]}"' in gallery  # the face ids a user writes corrections with
    assert f'title="{erased}"' not in gallery
    assert f'"{erased}"' not in (second / "clusters.json").read_text()
    assert f'"{erased}"' not in (second / "faces.jsonl").read_text()
    assert not (second / "thumbs" / (erased.replace(":", "_") + ".jpg")).exists()


def test_a_bad_corrections_file_is_refused_before_the_run_with_each_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrections = tmp_path / "fix.jsonl"
    corrections.write_text('{"type": "merge", "clusters": [1, 2]}\nnot json\n{"type": "obliterate"}\n')
    with pytest.raises(CorrectionsFileError) as raised:
        read_corrections(corrections)
    assert "fix.jsonl:2: malformed" in str(raised.value)
    assert "fix.jsonl:3: unknown_command" in str(raised.value)
    assert main(["run", "--sample", "--corrections", str(corrections), "-o", str(tmp_path / "out")]) == 2
    assert "fix.jsonl:2" in caplog.text
    assert not (tmp_path / "out").exists()
