"""The Masked Transformer Decoder (paper §3.3) and the encoder+MTD training model.

The decoder has the encoder's block structure (cross- then self-attention), but its queries are
the patch tokens of a target image with `mask_ratio` of them masked: a masked position carries
only the shared mask token plus its position embedding. ℓ is the keys/values of the
cross-attention, so whatever the decoder knows about the masked face must come through ℓ. It
predicts the pixels of every patch; the loss is the L1 error inside the face mask: the paper's
eq. 4 sums it over the face's pixels, ours averages it over them (`forward_loss`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.blocks import BlockStack
from omniid.config import ModelConfig
from omniid.encoder import WEIGHTS_FILE, OmniIDEncoder
from omniid.errors import FlagError
from omniid.noise import Draws
from omniid.objectives.base import ObjectiveOutput

DECODER_FILE = "decoder.safetensors"


def exact_random_mask(batch: int, patches: int, ratio: float, device=None,
                      generator: torch.Generator | Draws | None = None) -> torch.Tensor:
    """[batch, patches] bool, True = masked; exactly round(ratio * patches) per row. generator: a
    torch generator, or each item's own draws (`omniid.noise.Draws`: an item's masks the same in
    any batch, micro-batch, process or device)."""
    if not 0.0 <= ratio < 1.0:
        raise FlagError(f"mask ratio must be in [0, 1), got {ratio}")
    noise = Draws.wrap(generator).rand((batch, patches), device)
    # each row: a random permutation of 0..N-1; stable, so that tied noise (float32 draws tie
    # now and then) ranks alike on every device
    rank = noise.argsort(dim=1, stable=True).argsort(dim=1)
    return rank < int(round(ratio * patches))


class MaskedTransformerDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        p, side, c = config.decoder_patch_size, config.image_size, config.width
        if side % p:
            raise ValueError(f"image size {side} is not a multiple of the decoder patch size {p}")
        self.config, self.patch, self.grid = config, p, side // p
        self.patch_embed = nn.Linear(3 * p * p, c)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid ** 2, c) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, 1, c) * 0.02)
        self.blocks = BlockStack(c, config.heads, config.mlp_ratio, config.cross_blocks, config.self_blocks)
        self.head = nn.Linear(c, 3 * p * p)

    @property
    def num_patches(self) -> int:
        return self.grid ** 2

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, N, p*p*3] (row-major patches, pixels (y, x, channel) inside)."""
        b, p, g = images.shape[0], self.patch, self.grid
        x = images.reshape(b, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, g * g, p * p * 3)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, p*p*3] -> [B, 3, S, S]; the inverse of `patchify`."""
        b, p, g = patches.shape[0], self.patch, self.grid
        x = patches.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 3, g * p, g * p)

    def forward_decoder(self, latent: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """latent ℓ: [B, L, C]; targets: [B, 3, S, S]; masked: [B, N] bool -> pixels [B, N, p*p*3]."""
        tokens = self.patch_embed(self.patchify(targets))                  # [B, N, C]
        # masked positions keep nothing of the target: mask token + position only
        tokens = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.pos_embed.to(tokens.dtype)
        return self.head(self.blocks(tokens, latent))

    def forward_loss(self, pred: torch.Tensor, targets: torch.Tensor, face_masks: torch.Tensor) -> torch.Tensor:
        """pred: [B, N, p*p*3]; targets: [B, 3, S, S]; face_masks: [B, 1, S, S] in {0, 1} -> [B].

        The L1 error of every pixel inside the face, as in the paper's eq. 4, which sums it; ours
        divides each target's sum by its face's area (pixels x channels), so targets weigh the same
        whatever their face area. Background pixels have no effect.
        """
        error = (self.unpatchify(pred.float()) - targets.float()).abs() * face_masks
        face_pixels = face_masks.sum(dim=(1, 2, 3)) * targets.shape[1]
        return error.sum(dim=(1, 2, 3)) / face_pixels.clamp(min=1.0)


class OmniIDMTD(nn.Module):
    """Encoder + MTD: the module trained (and wrapped by DDP) in the `mtd` stage."""

    def __init__(self, config: ModelConfig, clip_weights=None, pretrained_clip: bool = True):
        super().__init__()
        self.encoder = OmniIDEncoder(config, clip_weights, pretrained_clip)
        self.decoder = MaskedTransformerDecoder(config)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)
        self.decoder.blocks.grad_checkpointing = enable

    def compute(self, inputs: torch.Tensor, input_valid: torch.Tensor, targets: torch.Tensor,
                masks: torch.Tensor, generator: torch.Generator | None = None,
                latent: torch.Tensor | None = None, item_keys: list[int] | None = None) -> ObjectiveOutput:
        """inputs: [B, M, 3, S, S]; input_valid: [B, M]; targets: [B, R, 3, S, S];
        masks: [B, R, 1, S, S] -> loss (the mean over all B*R targets), pred [B*R, N, p*p*3],
        aux {"masked": [B*R, N]}. latent: ℓ [B, L, C] to decode from instead of the inputs'
        (the identity-swap check); the masks are drawn the same either way. item_keys: one per
        item (a loader's batches carry them): each item's masks from its own key (`omniid.noise`);
        without them (a batch made by hand), the batch's from `generator`."""
        b, r = targets.shape[:2]
        if latent is None:
            latent = self.encoder.forward_encoder(inputs, input_valid)      # [B, L, C]
        latent = latent.repeat_interleave(r, dim=0)                         # [B*R, L, C]
        flat_targets = targets.flatten(0, 1)                                # [B*R, 3, S, S]
        ratio, patches = self.decoder.config.mask_ratio, self.decoder.num_patches
        masked = exact_random_mask(b * r, patches, ratio, targets.device, Draws(generator, item_keys, r))
        pred = self.decoder.forward_decoder(latent, flat_targets, masked)
        loss = self.decoder.forward_loss(pred, flat_targets, masks.flatten(0, 1)).mean()
        return ObjectiveOutput(loss, pred, {"masked": masked})

    def forward(self, inputs: torch.Tensor, input_valid: torch.Tensor, targets: torch.Tensor,
                masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The scalar loss of `compute`."""
        return self.compute(inputs, input_valid, targets, masks, generator).loss


class MTDObjective(OmniIDMTD):
    """The `mtd` stage: encoder + MTD as an objective (forward(batch, generator))."""

    stage = "mtd"
    loader_options: dict = {}

    @property
    def representation_module(self) -> nn.Module:
        return self.encoder

    def represent(self, batch: dict) -> torch.Tensor:
        """ℓ [B, L, C] of the batch's inputs."""
        return self.encoder.forward_encoder(batch["inputs"], batch["input_valid"])

    def forward(self, batch: dict, generator: torch.Generator | None = None,
                tokens: torch.Tensor | None = None) -> ObjectiveOutput:
        """tokens: ℓ [B, L, C] to decode from instead of `represent(batch)`. The masks: each item's
        own (`item_keys`, which a loader's batches carry), else drawn from `generator`."""
        return self.compute(batch["inputs"], batch["input_valid"], batch["targets"], batch["masks"], generator,
                            tokens, batch.get("item_keys"))

    def save_pretrained(self, folder: str | Path) -> None:
        self.encoder.save_pretrained(folder)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.decoder.state_dict().items()},
                  str(Path(folder) / DECODER_FILE))

    def load_pretrained(self, folder: str | Path) -> None:
        self.init_from(folder)
        self.decoder.load_state_dict(load_file(str(Path(folder) / DECODER_FILE)))

    def init_from(self, folder: str | Path) -> None:
        self.encoder.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))


def build(preset, clip_weights=None, pretrained_clip: bool = True, device="cpu", **_) -> MTDObjective:
    return MTDObjective(preset.model, clip_weights, pretrained_clip).to(device)
