"""Presets: the model, data and optimisation settings of one training recipe, in a registry.

`paper` follows Omni-ID §3-§4.1 (CLIP ViT-H/14, L=256 queries of C=1280, 2 cross- and 2
self-attention blocks, 3 inputs -> 8 targets, 95% masking; MTD for 250K steps, then the
flow-matching decoder on FLUX.1-dev for 10K); the settings a comment marks "ours" (LAION-2B
weights, 224 px input, 14 px decoder patches, the flow stage's batch, the baselines' widths and
schedule, ...) are our choices where the paper gives none (docs/train.md's table). `tiny` has the same structure at a size that trains
on a CPU in seconds; its CLIP tower is a registered open_clip config that ships in
`omniid/configs/clip/`, and its FLUX transformer and VAE are tiny random diffusers configs from
`omniid/configs/flux/`.

A preset holds one data and optim section per stage (`data`/`optim` for mtd, `flow_data`/
`flow_optim` for flow); `get_preset(name, stage=...)` returns the preset with the stage's
sections in `data` and `optim`, so the engine reads one place whatever the stage.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from omniid.errors import FlagError

# configs as data (open_clip's model_configs/ style): clip/ holds open_clip model configs, flux/
# diffusers configs of FLUX transformers and VAEs
CONFIG_DIR = Path(__file__).parent / "configs"
CLIP_CONFIG_DIR = CONFIG_DIR / "clip"
FLUX_CONFIG_DIR = CONFIG_DIR / "flux"


@dataclass(frozen=True)
class ModelConfig:
    clip_model: str = "ViT-H-14"            # an open_clip model name
    clip_pretrained: str | None = "laion2b_s32b_b79k"  # ours (LAION-2B); open_clip tag, None: random init
    image_size: int = 224                   # ours: encoder input side (CLIP's native resolution)
    num_queries: int = 256                  # L
    width: int = 1280                       # C
    heads: int = 16
    cross_blocks: int = 2
    self_blocks: int = 2
    mlp_ratio: float = 4.0
    # MTD decoder: the same block structure, queries are the target's patch tokens
    decoder_patch_size: int = 14            # ours: CLIP's patch size
    mask_ratio: float = 0.95                # paper's ablations: 0.99, 0.85

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The paper's few-to-many ablations (|X^s|-|X^r|), applied on top of a preset.
FEW_TO_MANY = {"3-8": (3, 8), "3-1": (3, 1), "3-5": (3, 5), "8-8": (8, 8)}


@dataclass(frozen=True)
class DataConfig:
    """Per identity, M inputs and R targets (`omniid.draws`: MTD samples targets from all the faces,
    flow from those not inputs). The paper's few-to-many (§3.2) reconstructs more images than it is
    given, so R >= M is required; fewer only as the paper's few-to-one ablation (3-1, `FEW_TO_MANY`)."""
    num_inputs: int = 3                     # |X^s|
    num_inputs_min: int | None = None       # < num_inputs: M drawn per identity in [min, num_inputs]
    num_targets: int = 8                    # |X^r|
    batch_size: int = 8                     # identities per process per micro-batch
    workers: int = 4
    # each identity's last N faces (crop-path order) kept out of training and evaluated (with the
    # identity-swap gap) as held-out frames of the training identities; 0: none, else at least 2
    # (one input and one target that is not it)
    holdout_faces: int = 0

    def __post_init__(self):
        low = self.num_inputs if self.num_inputs_min is None else self.num_inputs_min
        if not 1 <= low <= self.num_inputs:
            raise FlagError(f"need 1 <= num_inputs_min <= num_inputs, got {low} and {self.num_inputs}")
        ablation = (self.num_inputs, self.num_targets) in FEW_TO_MANY.values()
        if self.num_targets < self.num_inputs and not ablation:
            raise FlagError(f"{self.num_targets} targets for {self.num_inputs} inputs: few-to-many (paper §3.2) "
                            "needs at least as many targets as inputs (fewer only as the paper's 3-1 ablation)")
        if self.holdout_faces == 1:
            raise FlagError("holdout_faces 1: a held-out identity needs 2 faces at least (an input, and a "
                            "target that is not it)")


@dataclass(frozen=True)
class OptimConfig:
    # our defaults for the paper preset: the paper does not pin these in §4.1
    lr: float = 1e-5
    min_lr_ratio: float = 0.1               # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 1000
    total_steps: int = 100_000
    grad_accum: int = 1
    grad_clip: float = 1.0
    bf16: bool = True                       # autocast on CUDA only
    grad_checkpointing: bool = True         # encoder blocks + CLIP; FLUX's blocks in the flow stage
    optimizer: str = "adamw"                # adamw | adamw_fused (CUDA) | adamw_8bit (needs bitsandbytes)
    representation_lr_scale: float = 1.0    # the representation's lr = lr x this (1: one lr, as the paper)


def flux_config(name: str) -> dict:
    """A diffusers config dict from `configs/flux/NAME.json` (a fresh copy per call)."""
    return json.loads((FLUX_CONFIG_DIR / f"{name}.json").read_text())


# tiny random FLUX: 2 double + 2 single blocks, 2 heads of 16, text/pooled width 32, 4-channel VAE
# (its scaling and shift factors are FLUX's VAE latent statistics)
TINY_FLUX = flux_config("tiny-transformer")
TINY_VAE = flux_config("tiny-vae")
# FLUX.1-dev's own configs (transformer/config.json, vae/config.json): random-weight benchmarks
# and parameter counts use them without the weights
FLUX_DEV = flux_config("flux-dev-transformer")
FLUX_DEV_VAE = flux_config("flux-dev-vae")


@dataclass(frozen=True)
class FlowConfig:
    """The flow-matching decoder (paper §3.3, eq. 6-7) on a frozen FLUX transformer + VAE."""
    flux_path: str | None = None            # diffusers-format FLUX.1-dev folder (or $OMNIID_FLUX_PATH)
    transformer: dict | None = None         # a random FluxTransformer2DModel config instead (tiny, tests)
    vae: dict | None = None                 # a random AutoencoderKL config (with `transformer`)
    image_size: int = 448                   # targets, in [-1, 1], VAE-encoded
    prompt: str = "photo of a person."      # fixed, encoded once and cached
    max_sequence_length: int = 512          # T5 tokens of the cached prompt
    guidance: float = 3.5                   # ours: FLUX.1-dev's guidance embedding value in training
    timesteps: str = "uniform"              # t ~ U(0,1), or "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    adapter_dim: int | None = None          # projection width; None: the transformer's text width (4096)
    adapter_scale: float = 1.0
    dtype: str = "bfloat16"                 # frozen FLUX + VAE on CUDA (always float32 on CPU)
    latents: str = "sample"                 # the VAE posterior: "sample" (FLUX training) or "mean"
    # the adapter stage's ControlNet (Table 1's setting): blocks copied from FLUX's first ones,
    # clamped to its counts; ours: the paper does not give them
    controlnet_layers: int = 4
    controlnet_single_layers: int = 0


@dataclass(frozen=True)
class ConvergenceConfig:
    """When a run stops as converged, checked at each evaluation (`omniid.convergence`). Ours: the
    paper trains its baselines "to convergence" without saying how."""
    patience: int = 0                       # evaluations in a row without a new best loss, then stop; 0: off
    min_delta: float = 0.0                  # a new best is below the best so far by more than this fraction
    monitor: str = "eval"                   # whose loss: "eval" (test.parquet) or "heldout" (--holdout-faces)


@dataclass(frozen=True)
class BaselineConfig:
    """The baseline representations (`omniid.baselines`) and their own flow-stage schedule, which
    replaces `flow_optim` and turns the convergence rule on for `--representation` != omniid."""
    tokens: int = 256                       # paper: ArcFace's 1x512 embedding projected to 256 tokens
    width: int = 512                        # ours: the tokens' width (the adapter's projection takes any)
    heads: int = 8                          # ours: arcface+clip's attention heads (64 channels each)
    # ours: the adapter starts from zero as in IP-Adapter, so its lr (1e-4); total_steps is the cap
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=250,
                                                                   total_steps=100_000))
    convergence: ConvergenceConfig = field(default_factory=lambda: ConvergenceConfig(patience=5, min_delta=1e-3))


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    flow: FlowConfig = field(default_factory=FlowConfig)
    flow_data: DataConfig = field(default_factory=DataConfig)
    flow_optim: OptimConfig = field(default_factory=OptimConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)  # the run's rule (off)
    stage: str = "mtd"                      # which stage's sections `data` and `optim` hold
    seed: int = 0
    log_every: int = 10
    eval_every: int = 1000
    eval_batches: int = 8
    save_every: int = 5000
    # ours: after each save the newest `keep_checkpoints` step folders are kept (0: all) plus every
    # `milestone_every`th step (0: none); a paper MTD checkpoint is about 9.5 GB (docs/train.md)
    keep_checkpoints: int = 3
    milestone_every: int = 50_000
    cpu_threads: int | None = None          # torch threads when training on CPU (None: torch's default)
    # the identity-swap check (omniid.swap): from this step on, an evaluation whose swap gap is
    # under swap_min_gap x its own loss (negative included) is logged as a warning
    swap_warmup_steps: int = 2000
    swap_min_gap: float = 1e-3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def for_stage(self, stage: str) -> "Preset":
        """`data` and `optim` become the stage's own (the mtd ones stay the defaults)."""
        if stage == self.stage:
            return self
        if stage in ("flow", "adapter"):  # the adapter stage trains on FLUX with the flow stage's sections
            return replace(self, data=self.flow_data, optim=self.flow_optim, stage=stage)
        if stage == "mtd":
            return PRESETS[self.name] if self.name in PRESETS else replace(self, stage="mtd")
        raise KeyError(f"unknown stage {stage!r}")


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


register(Preset(
    name="paper", model=ModelConfig(), data=DataConfig(),
    optim=OptimConfig(total_steps=250_000),               # paper §4.1: MTD for 250K steps
    flow=FlowConfig(),
    # flow: the paper (§3.2) asks every decoder for more targets than inputs; the counts are ours.
    # 3 inputs -> 4 targets for 2 identities per GPU: 8 FLUX forwards at 448 px a step, the cost of
    # 4 identities x 2 targets, with half the encoder's inputs
    flow_data=DataConfig(num_inputs=3, num_targets=4, batch_size=2, workers=4),
    flow_optim=OptimConfig(lr=1e-5, warmup_steps=250, total_steps=10_000),  # paper §4.1: 10K steps
    baseline=BaselineConfig(),
))

register(Preset(
    name="tiny",
    model=ModelConfig(
        clip_model="OmniID-Tiny-ViT", clip_pretrained=None, image_size=32, num_queries=16, width=64,
        heads=4, cross_blocks=2, self_blocks=2, mlp_ratio=2.0, decoder_patch_size=8, mask_ratio=0.95,
    ),
    data=DataConfig(num_inputs=3, num_targets=8, batch_size=2, workers=0),
    optim=OptimConfig(lr=1e-3, min_lr_ratio=0.1, weight_decay=0.0, warmup_steps=2, total_steps=20,
                      grad_clip=1.0, bf16=False, grad_checkpointing=False),
    flow=FlowConfig(transformer=TINY_FLUX, vae=TINY_VAE, image_size=32, max_sequence_length=8, dtype="float32"),
    flow_data=DataConfig(num_inputs=3, num_targets=4, batch_size=1, workers=0),  # 4 FLUX forwards, as 2 x 2
    flow_optim=OptimConfig(lr=1e-3, min_lr_ratio=0.1, weight_decay=0.0, warmup_steps=2, total_steps=20,
                           grad_clip=1.0, bf16=False, grad_checkpointing=False),
    # the paper's structure at tiny sizes: as many tokens as Omni-ID's L, the encoder's width
    baseline=BaselineConfig(tokens=16, width=64, heads=4,
                            optim=OptimConfig(lr=1e-3, min_lr_ratio=0.1, weight_decay=0.0, warmup_steps=2,
                                              total_steps=20, grad_clip=1.0, bf16=False, grad_checkpointing=False),
                            convergence=ConvergenceConfig(patience=2, min_delta=1e-3)),
    # one thread: on 2 shared cores the tiny model ran ~30x faster than with torch's default of 2
    log_every=1, eval_every=10, eval_batches=1, save_every=10, cpu_threads=1, swap_warmup_steps=50,
))

# Ours, not the paper's: the tiny preset trained long enough on a CPU (a minute or two per stage)
# for the identity-swap gap to show on held-out frames of the demo's identities (docs/train.md).
# The flow stage's FLUX and VAE are random, and three things keep the faces from drowning in noise:
# the latents are the VAE posterior's means (its untrained variance is about 1); they are scaled
# to about unit variance, as FLUX's factors do for its trained VAE (the random VAE, of seed
# RANDOM_FLUX_SEED, has means of std 0.21 and mean 0.01 on the demo's faces; with FLUX's factors
# the faces are ~1% of the target ε - z); and the encoder learns 100x slower than the adapter,
# since AdamW moves each weight by about the lr whatever the size of its gradient, and the
# adapter's weak early gradients would otherwise scramble the encoder the MTD stage trained.
register(replace(
    PRESETS["tiny"], name="tiny-swap",
    data=replace(PRESETS["tiny"].data, holdout_faces=2),
    optim=replace(PRESETS["tiny"].optim, warmup_steps=10, total_steps=300),
    flow=replace(PRESETS["tiny"].flow, latents="mean", vae={**TINY_VAE, "scaling_factor": 4.75, "shift_factor": 0.01}),
    flow_data=replace(PRESETS["tiny"].flow_data, holdout_faces=2),
    flow_optim=replace(PRESETS["tiny"].flow_optim, warmup_steps=10, total_steps=900, representation_lr_scale=0.01),
    baseline=replace(PRESETS["tiny"].baseline,
                     optim=replace(PRESETS["tiny"].baseline.optim, warmup_steps=10, total_steps=900)),
    log_every=10, eval_every=50, eval_batches=8, save_every=300, swap_warmup_steps=200,
))

# The command line's names without importing torch (`--help` is instant); tests check them against the registries.
STAGES = ("mtd", "flow", "adapter")  # adapter: Table 1's setting, on the flow sections
REPRESENTATION_NAMES = ("omniid", "clip", "arcface", "arcface+clip")
DEFAULT_PRESET = "tiny"  # as mfhq's default is its offline preset: the one that needs no weights


def get_preset(name: str, stage: str = "mtd", representation: str = "omniid", **overrides) -> Preset:
    """A registered preset for `stage`, with top-level or `section.field` overrides (None values
    ignored); `data.*` / `optim.*` overrides apply to the stage's sections. A flow stage that
    trains a baseline (`representation` other than omniid) takes the baselines' schedule: their
    `optim` and convergence rule."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; registered: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name].for_stage(stage)
    if stage == "flow" and representation != "omniid":
        preset = replace(preset, optim=preset.baseline.optim, convergence=preset.baseline.convergence)
    sections: dict[str, dict] = {"model": {}, "data": {}, "optim": {}, "flow": {}, "convergence": {}}
    top = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, leaf = key.rpartition(".")
        (sections[section] if section else top)[leaf] = value
    return replace(
        preset,
        model=replace(preset.model, **sections["model"]),
        data=replace(preset.data, **sections["data"]),
        optim=replace(preset.optim, **sections["optim"]),
        flow=replace(preset.flow, **sections["flow"]),
        convergence=replace(preset.convergence, **sections["convergence"]),
        **top,
    )
