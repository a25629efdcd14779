"""The sections of a pipeline preset: every option with its default, what it does and its range.

Each option is one field: `option(default, doc, rule)` (mfhq/config_rules.py). Loading a preset
checks each value against its field's rule, and docs/presets.md is rendered from the same fields
(`python -m mfhq.presets_doc`), so what is checked and what is documented cannot part.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from mfhq.config_rules import (COSINE, COUNT, EXECUTOR, FRACTION, NON_NEGATIVE, POSITIVE, OneOf, Range,
                               option)

MODELS = ("a registered backend name (docs/models.md), or your own as module:Class; unknown names fail when "
          "the models load")


@dataclass(frozen=True)
class DecodeConfig:
    """How a clip is read: the decoder, the frames sampled, and the bounds on memory and time."""
    backend: str = option("auto", "the video reader: auto (PyAV, falling back to decord), decord, pyav, or "
                          "your own reader class as module:Class",
                          OneOf(("auto", "decord", "pyav"), r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", "module:Class"))
    fps: float = option(5.0, "frames sampled per second of video", POSITIVE)
    max_frames: int | None = option(None, "cap on sampled frames per clip, spread over the whole clip (null: no cap)",
                                    Range(1, optional=True))
    chunk_frames: int = option(32, "frames decoded per batch; bounds memory on long clips", COUNT)
    timeout_s: float = option(120.0, "the watchdog's bound on one decode call (seconds); past it the clip is a "
                              "`timeout` row", POSITIVE)


@dataclass(frozen=True)
class DetectConfig:
    """Face detection with 5 landmarks, on the frames or taken from a source's annotations."""
    backend: str = option("yunet", "the face detector: " + MODELS)
    score_threshold: float = option(0.7, "detections scored below are discarded", FRACTION)
    nms_threshold: float = option(0.3, "box IoU above which non-maximum suppression keeps only the best of two",
                                  FRACTION)
    max_faces: int = option(10, "faces kept per frame at most, best first", COUNT)
    working_size: int = option(640, "the detector sees the frame downscaled to this longer side (px), its boxes "
                               "and points mapped back: YuNet finds faces of about 10-300 px only, and a full "
                               "1080p frame costs about 10x more. 0 runs on the full frame. Backends with their "
                               "own input size (SCRFD) ignore it", NON_NEGATIVE)
    use_source_annotations: bool = option(True, "reuse the faces a source already located (VFHQ's per-frame box "
                                          "and 5 landmarks) instead of running the detector")
    verify_every: int = option(10, "with source annotations: one annotated frame in this many also goes through "
                               "the detector as a check (0: never)", NON_NEGATIVE)


@dataclass(frozen=True)
class EmbedConfig:
    """The identity embedding, and the schedule that lets a one-face track reuse embeddings."""
    backend: str = option("sface", "the face recogniser: " + MODELS)
    every: int = option(1, "1: every face goes through the embedder. k > 1: along a run of sampled frames "
                        "showing one face that overlaps the previous frame's (box IoU >= track_iou) and looks "
                        "like it (the NCC of small grey thumbnails of the aligned crops >= track_look), only "
                        "the run's first face, every k-th and its last are embedded; the faces between two of "
                        "them reuse the nearer one's embedding when the two agree (cosine >= "
                        "reuse_similarity), else they are embedded too (a cut to another person in the same "
                        "place). See docs/models.md", COUNT)
    track_iou: float = option(0.5, "box IoU with the previous frame's face that continues a run", FRACTION)
    track_look: float = option(0.85, "NCC of 28 px grey thumbnails of the aligned crops that continues a run "
                               "(>= 0.95 for one moving face, <= 0.62 between two people in our clips)", COSINE)
    reuse_similarity: float = option(0.6, "cosine between two embedded faces of a run at or above which the "
                                     "faces between them reuse an embedding", COSINE)


@dataclass(frozen=True)
class IdentityConfig:
    """Which faces are the clip's own person: the anchor, the threshold and track continuity."""
    similarity_threshold: float = option(0.363, "cosine similarity above which a face is the clip's own person. "
                                         "SFace's published verification threshold is 0.363; ArcFace's is "
                                         "usually set near 0.3-0.4", COSINE)
    anchor_frames: int = option(3, "the clip's person is fixed by the largest face in this many first frames "
                                "that have faces", COUNT)
    track_iou: float = option(0.5, "track continuity: in a frame where no face clears the threshold (blur, a "
                              "hard profile), a face that overlaps the person's last kept box by this IoU, at "
                              "most track_max_gap sampled frames later, is kept if its similarity is at least "
                              "track_similarity_floor", FRACTION)
    track_max_gap: int = option(2, "sampled frames since the person's last kept box over which a track continues",
                                NON_NEGATIVE)
    track_similarity_floor: float = option(0.2, "the least similarity of a face kept by track continuity", COSINE)


@dataclass(frozen=True)
class AlignConfig:
    """The aligned crop: template, size, and which faces are too small or too far outside the frame."""
    template: str = option("arcface", "arcface (5-point, scaled x4 to 448 px) or ffhq (quad, 512 px)",
                           OneOf(("arcface", "ffhq")))
    size: int = option(448, "side of the aligned crop (px)", Range(16))
    min_face_px: float = option(448.0, "the least source extent (px) of the aligned crop: below it the crop "
                                "would be upsampled, so the face is dropped as too_small", NON_NEGATIVE)
    max_out_of_frame: float = option(0.1, "the largest fraction of the aligned crop that may lie outside the "
                                     "source frame (filled with black); faces above it are dropped with reason "
                                     "out_of_frame", FRACTION)
    crop_format: str = option("jpg", "file format of the crops: jpg or png", OneOf(("jpg", "png")))
    jpeg_quality: int = option(95, "JPEG quality of the crops", Range(0, 100))
    crops: str = option("extract", "ours: extract (one pass: extract writes the crop and mask of every kept face "
                        "and runs parsing on each) or materialize (extract records each face's row with a digest "
                        "of its crop's pixels and writes no image; after cluster-sample, `mfhq materialize "
                        "--manifest DIR` decodes only the sampled frames and writes their crops and masks, the "
                        "same files the one pass writes). See docs/extract.md", OneOf(("extract", "materialize")))


@dataclass(frozen=True)
class PoseConfig:
    """Head pose (yaw, pitch, roll) of each face."""
    backend: str = option("pnp5", "the head-pose model: " + MODELS)


@dataclass(frozen=True)
class QualityConfig:
    """Face quality in [0, 1], higher is better."""
    backend: str = option("brisque", "the quality model: " + MODELS)
    min_quality: float | None = option(None, "faces below are dropped with reason low_quality (null: none are)",
                                       Range(0, 1, optional=True))


@dataclass(frozen=True)
class ParsingConfig:
    """The face mask of each kept crop."""
    backend: str = option("dlib68-hull", "the face-mask model: " + MODELS)


@dataclass(frozen=True)
class SourcesConfig:
    """The datasets a recipe is built from. Which clips are read, not how rows are made."""
    names: list = option([], "source adapter names (`mfhq sources`); `mfhq extract --source all` reads those "
                         "it finds under its root")


def usable_cores() -> int:
    """The CPUs this process may run on: a Slurm job or `taskset` gets its share, not the node's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class RunConfig:
    """How a run is carried out: shards, workers, device, executor and time bounds."""
    shard_size: int = option(16, "clips per output shard", COUNT)
    workers: int = option(1, "worker processes (local) or actors (ray), each with one model load", COUNT)
    clip_timeout_s: float = option(1800.0, "the watchdog's bound on one clip's whole processing (seconds)",
                                   POSITIVE)
    device: str = option("cpu", "where the models run: cpu, cuda or cuda:N (decoding stays on the CPU)",
                         OneOf(("cpu", "cuda"), r"cuda:\d+", "cuda:N"))
    executor: str = option("local", "local (worker processes on this machine) or ray (a Ray cluster); see "
                           "docs/extract.md", EXECUTOR)
    address: str | None = option(None, "ray: the cluster's address; null starts a local Ray instance")
    num_cpus: float = option(1.0, "ray: CPUs per shard task (an actor that loads the models once)", POSITIVE)
    num_gpus: float = option(0.0, "ray: GPUs per shard task", NON_NEGATIVE)
    batch_frames: int = option(64, "with a cuda device: frames gathered across a shard's clips per model call "
                               "(0: one clip's chunk)", NON_NEGATIVE)
    batch_on_cpu: bool = option(False, "gather batch_frames across clips on the CPU too: it does not pay there "
                                "(one clip at a time holds less memory); for tests of the batched path and "
                                "measurements. Rows do not depend on it")
    decode_ahead: str = option("auto", "a worker reads a clip's next chunk in a thread while the models work on "
                               "the current one, and on CPU the next clip's first chunk while they work on "
                               "this clip's last (one more chunk in memory). That pays only with a core to "
                               "spare (docs/performance.md). auto: on with a GPU, with fewer local workers "
                               "than usable cores, or with Ray actors of 2+ CPUs. Rows do not depend on it",
                               OneOf(("auto", "always", "never")))

    def gathered_frames(self) -> int:
        """Frames a worker gathers across a shard's clips per model call; 0: one clip's chunk at a
        time. Gathering pays only on an accelerator; batch_on_cpu gathers on the CPU too."""
        return self.batch_frames if str(self.device).startswith("cuda") or self.batch_on_cpu else 0

    def reads_ahead(self, cores: int | None = None) -> bool:
        """Whether workers read ahead under this config, on a machine with `cores` CPUs."""
        if self.decode_ahead != "auto":
            return self.decode_ahead == "always"
        if str(self.device).startswith("cuda"):
            return True  # the models run on the GPU: the worker's core mostly waits
        if self.executor == "ray":
            return self.num_cpus >= 2
        return self.workers < (cores or usable_cores())


@dataclass(frozen=True)
class CurateConfig:
    """cluster-sample, identity merge and split (mfhq/curate/). Defaults follow the paper where
    it says (8 faces per identity, 44 held-out videos); the rest are ours."""
    faces_per_identity: int = option(8, "faces sampled per identity", COUNT)
    pose_clusters: int = option(16, "K of the per-identity pose k-means; above faces_per_identity", COUNT)
    kmeans_iters: int = option(10, "Lloyd iterations at most (stops early when labels settle)", COUNT)
    seed: int = option(0, "k-means++ seeding; hashed per face, so chunking cannot change it")
    min_quality: float | None = option(None, "faces below are not usable for sampling (null: all are)",
                                       Range(0, 1, optional=True))
    short_identities: str = option("drop", "an identity with fewer usable faces than faces_per_identity: drop "
                                   "it, or keep it and flag it", OneOf(("drop", "flag")))
    chunk_faces: int = option(1_000_000, "faces per k-means batch (bounds memory; results do not depend on it)",
                              COUNT)
    workers: int = option(1, "threads for the k-means (one identity per thread; results do not depend on it)",
                          COUNT)
    merge: str = option("merge", "clips that are one identity: merge (pool their faces), dedup (keep the "
                        "largest clip) or off", OneOf(("merge", "dedup", "off")))
    merge_by_video_key: bool = option(True, "clips of one source video (YouTube id) are one identity, across "
                                      "sources too")
    video_key_min_similarity: float | None = option(0.3, "two people can share a video (an interview): a "
                                                    "video-key merge also needs this cosine similarity between "
                                                    "the clips' mean embeddings (null: the key alone)",
                                                    Range(-1, 1, optional=True))
    merge_by_embedding: bool = option(True, "clips of different videos merge when their mean embeddings agree "
                                      "(embedding_similarity); a video-key group is compared as one, by the "
                                      "mean of its clips' means")
    embedding_similarity: float = option(0.6, "cosine of mean embeddings (a clip's, or a video-key group's) at "
                                         "or above which they merge", COSINE)
    split: str = option("videos", "videos (hold out test_videos source videos) or official (the source's own "
                        "split)", OneOf(("videos", "official")))
    test_videos: int = option(44, "source videos with sampled faces held out for test, at least: whole "
                              "identity/video groups go until this many are, one group always stays in train (split: videos)",
                              NON_NEGATIVE)
    split_seed: int = option(0, "the hashed order in which identity/video groups are held out")

