"""The baseline representations of Omni-ID's Tables 1-2, trained and evaluated like Omni-ID.

Each is an `nn.Module` with `forward(batch) -> tokens [B, N, D]`, `num_tokens` (N) and `dim` (D),
the representation contract of `omniid.representations` (whose table imports the builders here by
name), so the flow stage trains the adapter on top of it (and the baseline's own trainable part)
and the table compares representations. Sizes come from the preset's `baseline` section.

- `clip`: the frozen CLIP tower's tokens (CLS + patches, after the final LayerNorm): 257 x 1280
  for ViT-H/14 at 224 px. With several input images the tokens are averaged position by position
  over the valid images (ours), so N stays fixed and the result does not depend on the input order.
- `arcface`: the pipeline's identity model (ArcFace in the paper profile, SFace offline; through
  `mfhq.faces`) on each input, the embeddings averaged and re-normalised (ours), then projected
  to `baseline.tokens` tokens (256, as the paper states) of `baseline.width` (512, ours) by
  diffusers' `ImageProjection` (Linear + LayerNorm), trainable. The identity model is frozen and
  runs outside autograd; its 112 px input is each input's aligned crop read at 112 px (ours; the
  batch's `identity_inputs`: a manifest's 448 px JPEG crop decoded at 1/4 scale in the DCT, the
  same read for a crop given at inference, `omniid.face_inputs`), whatever the encoder's side, so
  no detection is needed and a tiny preset's 32 px input is never scaled up. The representation
  asks its loaders for that read (`loader_options`); a batch without it (the encoder's tensor
  alone) falls back to the encoder's input resized to 112 px (`IdentityEmbedding.embed`).
- `arcface+clip`: FaceID-Plus style: the ArcFace-derived tokens of `arcface` are the queries of
  the encoder's block type (`omniid.blocks.BlockStack`: cross-attention, then self-attention)
  whose keys/values are the frozen CLIP tokens of every input image (concatenated with key
  padding, as the Omni-ID encoder takes them), projected to `baseline.width`. N is the number of
  queries. The block counts and MLP ratio are the encoder's; the heads, the width and CLIP's
  final-LayerNorm tokens (FaceID-Plus reads the penultimate layer) are ours.

A frozen CLIP tower is never trained, so a checkpoint does not hold it: a fresh run and a resumed
one both load it from the preset's pretrained weights, and so does omniid-eval. The run records
that file's name and sha256 (`frozen_clip_identity`, in state.json), and a resumed run or an
evaluation that would load other weights is refused (`omniid.continuation`). Only a randomly
initialised tower (the tiny preset, whose weights exist nowhere else) is saved with the trained part.
Likewise `arcface` and `arcface+clip` record their frozen identity model (`frozen_identity_model`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.blocks import BlockStack
from omniid.clip_tower import build_clip_visual, clip_tokens, clip_weights_identity, clip_width, resolve_clip_weights
from omniid.errors import CheckpointError, CheckpointNotFound
from omniid.preprocess import CLIP_MEAN, CLIP_STD, IDENTITY_SIDE

BASELINE_FILE = "representation.safetensors"


def _valid(batch: dict) -> torch.Tensor:
    inputs = batch["inputs"]
    valid = batch.get("input_valid")
    return torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device) if valid is None else valid


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values [B, M, ...], valid [B, M] -> [B, ...], the mean over the valid images."""
    weights = valid.to(values.dtype).view(*valid.shape, *([1] * (values.ndim - 2)))
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


class ClipTokens(nn.Module):
    """The frozen CLIP tower: per-image tokens [B, M, 1 + (S/p)^2, W], or their mean over the inputs."""

    def __init__(self, model_config, clip_weights=None):
        super().__init__()
        # the preset's weights whether the run is fresh or resumed: a checkpoint never holds them
        weights = resolve_clip_weights(model_config, clip_weights)
        self.clip = build_clip_visual(model_config, weights).eval()
        self.clip.requires_grad_(False)
        # a randomly initialised tower (the tiny preset) exists nowhere else: checkpoints keep it
        self.saved_with_checkpoint = model_config.clip_pretrained is None
        side = model_config.image_size
        patch = self.clip.conv1.kernel_size[0]
        self.num_tokens = 1 + (side // patch) ** 2
        self.dim = clip_width(self.clip)

    def train(self, mode: bool = True) -> "ClipTokens":
        super().train(mode)
        self.clip.eval()  # frozen: always in eval mode
        return self

    def per_image(self, batch: dict) -> torch.Tensor:
        """[B, M, T, W]; padded slots are zeros."""
        inputs, valid = batch["inputs"], _valid(batch)
        with torch.no_grad():
            tokens = clip_tokens(self.clip, inputs[valid])            # [V, T, W]
        full = tokens.new_zeros(*valid.shape, *tokens.shape[1:])
        full[valid] = tokens
        return full

    def forward(self, batch: dict) -> torch.Tensor:
        return _masked_mean(self.per_image(batch), _valid(batch))


IDENTITY_LOADER_OPTIONS = {"identity_side": IDENTITY_SIDE}  # what the identity model's representations' loaders add


class IdentityEmbedding:
    """The mfhq identity model on ArcFace-aligned faces: the batch's 112 px reads of the crops
    (`identity_inputs`), or else its CLIP-normalised encoder inputs resized."""

    def __init__(self, pipeline, models_dir=None):
        from mfhq.faces import Faces

        self.faces = Faces.from_preset(pipeline, models_dir, tasks=("embed",))
        self.name = self.faces.models["identity_model"]
        self.dim = int(self.embed(torch.zeros(1, 3, IDENTITY_SIDE, IDENTITY_SIDE)).shape[1])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, S, S] CLIP-normalised RGB -> [N, D] unit vectors (float32, on images' device)."""
        mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
        rgb = (images.detach().float() * std + mean).clamp(0, 1)
        rgb = F.interpolate(rgb, size=(IDENTITY_SIDE, IDENTITY_SIDE), mode="bilinear", align_corners=False,
                            antialias=True)
        pixels = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return self.embed_pixels(torch.from_numpy(pixels)).to(images.device)

    def embed_pixels(self, faces: torch.Tensor) -> torch.Tensor:
        """faces uint8 [N, 112, 112, 3] RGB -> [N, D] unit vectors (float32, on faces' device)."""
        if faces.dtype != torch.uint8 or tuple(faces.shape[1:]) != (IDENTITY_SIDE, IDENTITY_SIDE, 3):
            raise ValueError(f"identity_inputs must be uint8 [N, {IDENTITY_SIDE}, {IDENTITY_SIDE}, 3], got "
                             f"{faces.dtype} {list(faces.shape)}")
        out = self.faces.embed(faces.cpu().numpy())
        return torch.from_numpy(np.asarray(out, np.float32)).to(faces.device)

    def pooled(self, batch: dict) -> torch.Tensor:
        """The embeddings of the valid inputs, averaged and re-normalised: [B, D]. Each input's
        112 px read of its crop (`identity_inputs`) where the batch has it, else its encoder input."""
        valid = _valid(batch)
        faces = batch.get("identity_inputs")
        embeddings = self.embed(batch["inputs"][valid]) if faces is None else self.embed_pixels(faces[valid])
        full = embeddings.new_zeros(*valid.shape, embeddings.shape[1])
        full[valid] = embeddings
        return F.normalize(_masked_mean(full, valid), dim=-1)


class ArcFaceTokens(nn.Module):
    """One identity embedding [B, D_id] -> `tokens` tokens [B, tokens, width] (trainable)."""

    def __init__(self, embed_dim: int, tokens: int, width: int):
        super().__init__()
        from diffusers.models.embeddings import ImageProjection

        self.projection = ImageProjection(image_embed_dim=embed_dim, cross_attention_dim=width,
                                          num_image_text_embeds=tokens)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.projection(embedding.to(self.projection.image_embeds.weight.dtype))


class _Saved(nn.Module):
    """save_pretrained / load_pretrained of the trained part, and of a frozen CLIP tower only when
    it is random (tiny preset); pretrained CLIP weights are reloaded from their file."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        keep = {k for k, v in self.named_parameters() if v.requires_grad}
        for name, module in self.named_modules():
            if getattr(module, "saved_with_checkpoint", False):
                keep |= {f"{name}.{k}" for k in module.state_dict()}
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k in keep}

    def save_pretrained(self, folder: str | Path) -> None:
        state = self.trainable_state()
        if state:
            Path(folder).mkdir(parents=True, exist_ok=True)
            save_file(state, str(Path(folder) / BASELINE_FILE))

    def load_pretrained(self, folder: str | Path) -> None:
        path = Path(folder) / BASELINE_FILE
        if not self.trainable_state():
            return
        if not path.is_file():
            raise CheckpointNotFound(f"{folder}: no {BASELINE_FILE} (the baseline's trained part)")
        missing, unexpected = self.load_state_dict(load_file(str(path)), strict=False)
        bad = [k for k in missing if k in self.trainable_state()] + list(unexpected)
        if bad:
            raise CheckpointError(f"{path}: does not fit this representation ({', '.join(bad[:5])})")


class ClipRepresentation(_Saved):
    def __init__(self, model_config, clip_weights=None):
        super().__init__()
        self.tokens = ClipTokens(model_config, clip_weights)
        self.num_tokens, self.dim = self.tokens.num_tokens, self.tokens.dim

    def forward(self, batch: dict) -> torch.Tensor:
        return self.tokens(batch)


class ArcFaceRepresentation(_Saved):
    loader_options = IDENTITY_LOADER_OPTIONS  # of the class: read without building it (representations.loader_options_of)

    def __init__(self, identity: IdentityEmbedding, baseline):
        super().__init__()
        self.identity = identity  # not a module: frozen, outside autograd, not in the state dict
        self.arcface = ArcFaceTokens(identity.dim, baseline.tokens, baseline.width)
        self.num_tokens, self.dim = baseline.tokens, baseline.width

    def forward(self, batch: dict) -> torch.Tensor:
        return self.arcface(self.identity.pooled(batch))


class ArcFaceClipRepresentation(_Saved):
    """ArcFace-derived queries attending to every input's CLIP tokens (FaceID-Plus style)."""
    loader_options = IDENTITY_LOADER_OPTIONS  # as ArcFaceRepresentation's

    def __init__(self, model_config, identity: IdentityEmbedding, baseline, clip_weights=None):
        super().__init__()
        self.tokens = ClipTokens(model_config, clip_weights)
        self.identity = identity  # not a module: frozen, outside autograd, not in the state dict
        self.arcface = ArcFaceTokens(identity.dim, baseline.tokens, baseline.width)
        self.clip_proj = nn.Linear(self.tokens.dim, baseline.width)
        self.blocks = BlockStack(baseline.width, baseline.heads, model_config.mlp_ratio, model_config.cross_blocks,
                                 model_config.self_blocks)
        self.num_tokens, self.dim = baseline.tokens, baseline.width

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.blocks.grad_checkpointing = enable

    def attend(self, embedding: torch.Tensor, clip: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """embedding [B, D_id]; clip [B, M, T, W_clip]; valid [B, M] -> [B, tokens, width]."""
        b, m, t = clip.shape[:3]
        queries = self.arcface(embedding)                                      # [B, N, C]
        context = self.clip_proj(clip.to(queries.dtype)).view(b, m * t, -1)   # [B, M*T, C]
        key_valid = valid[:, :, None].expand(b, m, t).reshape(b, m * t)
        return self.blocks(queries, context, key_valid)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.attend(self.identity.pooled(batch), self.tokens.per_image(batch), _valid(batch))


def _identity(preset, pipeline=None, models_dir=None) -> IdentityEmbedding:
    from omniid.metrics import default_pipeline

    return IdentityEmbedding(pipeline or default_pipeline(preset.name), models_dir)


# The builders take the options every representation is given and ignore the rest:
# `pretrained_clip` among them, since a frozen tower always comes from the preset's weights.
def build_clip(preset, clip_weights=None, **_) -> ClipRepresentation:
    return ClipRepresentation(preset.model, clip_weights)


def build_arcface(preset, pipeline=None, models_dir=None, **_) -> ArcFaceRepresentation:
    return ArcFaceRepresentation(_identity(preset, pipeline, models_dir), preset.baseline)


def build_arcface_clip(preset, pipeline=None, models_dir=None, clip_weights=None, **_) -> ArcFaceClipRepresentation:
    # the CLIP file is checked before the identity model loads, so a missing one fails first and fast
    resolve_clip_weights(preset.model, clip_weights)
    return ArcFaceClipRepresentation(preset.model, _identity(preset, pipeline, models_dir), preset.baseline,
                                     clip_weights)


FROZEN_CLIP = ("clip", "arcface+clip")  # the representations whose CLIP tower is frozen, loaded from outside


def frozen_clip_identity(representation: str, model_config, clip_weights=None) -> dict:
    """The CLIP weights file a representation's frozen tower loads, and its sha256 (both None
    when it has no frozen tower, or a random one that its checkpoints hold)."""
    if representation not in FROZEN_CLIP:
        return {"clip_weights": None, "clip_weights_sha256": None}
    return clip_weights_identity(model_config, clip_weights)


FROZEN_IDENTITY = ("arcface", "arcface+clip")  # the representations built on the frozen mfhq identity model


def frozen_identity_model(representation: str, preset, models_dir=None) -> dict:
    """The mfhq identity model a representation's frozen embedding loads (`_identity`: the preset's
    default pipeline's, ArcFace or SFace, in models_dir as `_identity` loads it): its name and weight files, and their sha256 (one file's
    own; several files': the sha256 of theirs in the backend's declared order). None for both when
    the representation has none. The model is not loaded here, and its files are hashed once: the
    weights check that finds them hashes them, and the later load reuses it."""
    if representation not in FROZEN_IDENTITY:
        return {"identity_model": None, "identity_model_sha256": None}
    from mfhq.faces import identity_weights
    from omniid.metrics import default_pipeline

    name, weights = identity_weights(default_pipeline(preset.name), models_dir)  # as `_identity` finds them
    digests = [sha256 for _, sha256 in weights]
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
    files = ", ".join(str(path.resolve()) for path, _ in weights)
    return {"identity_model": f"{name} ({files})", "identity_model_sha256": digest}


BASELINES = {"clip": build_clip, "arcface": build_arcface, "arcface+clip": build_arcface_clip}


def register_baselines(register) -> None:
    """Adds the three to another registry: `register(name, builder)` for each (the representation
    registry's own table already names them)."""
    for name, builder in BASELINES.items():
        register(name, builder)
