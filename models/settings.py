"""Settings of the model layer; the worker composes them into the one config tree."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.session import PROVIDER_PREFERENCE


class FrozenModel(BaseModel):
    """The base of this room's settings: immutable once validated, a field it does not know is an error (a
    misspelt setting fails at start), and errors never echo the input. Each ground room (models, clustering,
    streaming) owns this line of configuration, so that none imports another (docs/architecture.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class RuntimeSettings(FrozenModel):
    providers: tuple[str, ...] = Field(
        PROVIDER_PREFERENCE,
        description="Execution providers in order of preference; those onnxruntime lacks are skipped.",
    )
    intra_op_threads: int = Field(0, ge=0, description="Threads inside one operator (0: onnxruntime's choice).")
    inter_op_threads: int = Field(0, ge=0, description="Threads across operators (0: onnxruntime's choice).")
    spin_wait: bool = Field(
        False,
        description="Let onnxruntime's threads spin while they wait for work (its own default) instead of "
        "sleeping: spinning threads take the cores the pipeline's other steps need between model calls.",
    )
    cache_dir: Path = Field(
        Path("~/.cache/facestream").expanduser(),
        description="Where model files that ship as bytes inside a package are written once.",
    )


class DetectorSettings(FrozenModel):
    model: str = Field("scrfd-500m", description="Registry id or path of a RetinaFace/SCRFD ONNX file.")
    sha256: str | None = Field(None, description="Expected sha256 of a model given by path.")
    input_size: tuple[int, int] = Field(
        (640, 640), description="Width and height the frames are scaled to fit (a fixed graph size wins)."
    )
    fit_aspect: bool = Field(
        True,
        description="Where the graph's input is dynamic, give it the frame's own aspect (a 640x360 frame as "
        "640x384) instead of padding it to input_size: the same faces for 40% less detector time.",
    )
    max_upscale: float = Field(
        1.0,
        ge=1.0,
        description="Largest enlargement of a frame smaller than the input. Enlarging tight face crops "
        "makes faces bigger than SCRFD's anchors and it finds none; 1.0 pads small frames instead.",
    )
    score_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Detections scoring lower are dropped.")
    nms_threshold: float = Field(
        0.4, gt=0.0, le=1.0, description="Overlap (IoU) above which the lower-scoring of two boxes is dropped."
    )
    max_faces: int = Field(100, ge=1, description="Most faces kept per frame, highest scores first.")


class EmbedderSettings(FrozenModel):
    model: str = Field("arcface-w600k-mbf", description="Registry id or path of an ArcFace-style ONNX file.")
    sha256: str | None = Field(None, description="Expected sha256 of a model given by path.")
    input_mean: float = Field(127.5, description="Pixels enter the model as (value - mean) / std.")
    input_std: float = Field(127.5, gt=0, description="See input_mean.")
    channel_order: Literal["rgb", "bgr"] = Field("rgb", description="Channel order the model was trained on.")
    batch_size: int = Field(32, ge=1, le=1024, description="Most faces per embedder call.")
    flip: bool = Field(
        False,
        description="Embed each face and its mirror image and keep their mean (test-time flip): a steadier "
        "vector for the same model, at twice the embedder's work.",
    )


class QualitySettings(FrozenModel):
    min_face_size: float = Field(20.0, ge=0.0, description="Shorter side of the box, in pixels.")
    min_score: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Detector score below which a face is not embedded (the detector's own "
        "threshold drops faces before this gate).",
    )
    min_sharpness: float = Field(
        6.0, ge=0.0, description="Variance of the Laplacian of the aligned grey crop; lower is blurrier."
    )
    max_yaw: float = Field(
        3.0,
        ge=0.0,
        description="Nose offset from the eyes' midpoint along the eye line, in half eye distances "
        "(0: frontal, 1: nose over one eye, a three-quarter view; more: a profile).",
    )


class TrackingSettings(FrozenModel):
    """Faces followed through each camera's frames (README, "Tracking: how the defaults were chosen")."""

    enabled: bool = Field(
        True, description="false: detect every frame and embed every accepted face, each face on its own."
    )
    detect_interval: int = Field(
        4,
        ge=1,
        le=100,
        description="The detector runs on one frame in this many; the tracker carries faces between. A cut, "
        "a gap or a jump in the picture forces a detection.",
    )
    detect_every_s: float = Field(
        0.25,
        gt=0.0,
        description="...and at least this often in stream time, so a 12 fps camera is detected every third "
        "frame where a 25 fps one is every fourth (faces move as far in a quarter second at any frame rate).",
    )
    motion_threshold: float = Field(
        12.0, gt=0.0, le=255.0, description="Change of the picture that forces a detection on this frame."
    )
    idle_detect_every_s: float = Field(
        1.0,
        gt=0.0,
        description="A camera with no face tracked and nothing moved since its last detection is detected only "
        "this often (stream time) instead of every detect_every_s: an empty scene costs little, and a face "
        "that came in without moving anything is still found within this time.",
    )
    motion_pixel_change: float = Field(
        20.0,
        gt=0.0,
        le=255.0,
        description="Change of a pixel of the frame's grey copy at 1/8 size (0-255) that counts as motion: above "
        "the noise of a still camera's 8x8 blocks (a few levels), below a person against a background (tens). "
        "Motion is a changed area at least the size of the smallest face the quality gate embeds.",
    )
    embed_interval_s: float = Field(
        2.0,
        ge=0.0,
        description="A track's face is embedded when the track starts, then at most this often (seconds of "
        "the stream), or sooner when a clearly better face turns up.",
    )
    first_embeddings: int = Field(
        3,
        ge=1,
        le=100,
        description="A track's first this many accepted detected faces are all embedded (one face is a weak "
        "sample of a person: a young track needs a few to find its cluster); then embed_interval_s applies.",
    )
    track_template: bool = Field(
        True,
        description="A tracked face's embedding is its track's template so far (the quality-weighted mean of "
        "the track's embedded faces): a track is one person, and the mean of its faces a steadier sample.",
    )
    better_quality: float = Field(
        1.5,
        ge=1.0,
        description="A face this many times the quality of the track's last embedded face is embedded at once.",
    )
    appearance_max_s: float = Field(
        60.0, gt=0.0, description="A track still going after this many seconds reports an appearance anyway."
    )
    publish_tracked_faces: bool = Field(
        False,
        description="Also publish a record, and an assignment, for every tracked face that was not embedded "
        "(by default one person in view for a minute is a few messages, not one per frame).",
    )
    match_iou: float = Field(0.3, gt=0.0, lt=1.0, description="Least overlap of a detection with a track's box.")
    crossing_iou: float = Field(
        0.2, gt=0.0, lt=1.0, description="Two tracks overlapping more than this end (crossing faces may swap)."
    )
    max_misses: int = Field(1, ge=0, le=50, description="Detections a track may miss in a row before it ends.")
    cut_threshold: float = Field(
        25.0,
        gt=0.0,
        le=255.0,
        description="Mean absolute change of a small grey copy of the frame (0-255) that marks a cut: every "
        "track of the camera ends.",
    )
    max_gap_s: float = Field(
        2.0,
        gt=0.0,
        description="Frames further apart than this (dropped frames, a paused stream) end the tracks; a camera "
        "sending nothing for this long (wall clock) reports its open tracks.",
    )
    max_cameras: int = Field(
        1000, ge=1, description="Cameras whose tracks a process keeps; the longest idle one ends beyond that."
    )


class ModelSettings(FrozenModel):
    runtime: RuntimeSettings = RuntimeSettings()
    detector: DetectorSettings = DetectorSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    quality: QualitySettings = QualitySettings()

    @model_validator(mode="after")
    def _providers_not_empty(self) -> ModelSettings:
        if not self.runtime.providers:
            raise ValueError("runtime.providers must name at least one execution provider")
        return self
