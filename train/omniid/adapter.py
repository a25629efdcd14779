"""The Omni-ID IP-Adapter for FLUX: decoupled attention on identity tokens (paper §3.3, eq. 6-7).

A representation's tokens [B, N, D] (ℓ: [B, 256, 1280]) are projected into the adapter's context
space [B, N, context_dim]; every double-stream block of the transformer gets `to_k_ip` / `to_v_ip`
and adds `scale * attention(query, K_ip, V_ip)` to its image stream (the placement is ours: the
double-stream blocks only, where diffusers' FLUX has an IP path). Everything is diffusers'
own, attached through attention processors, so no diffusers class is edited:

- `FluxIPAdapterAttnProcessor` (one per double-stream block) holds `to_k_ip` / `to_v_ip` and the
  scale. Single-stream blocks have no IP path in diffusers, and get none here.
- the projection is `IPAdapterFullImageProjection` (FeedForward D->D->context_dim, LayerNorm),
  which maps a token *sequence*; diffusers' `ImageProjection` would not fit, since it expands
  one pooled CLIP vector into tokens. It is wrapped in `MultiIPAdapterImageProjection` as
  `transformer.encoder_hid_proj`, which is where `FluxTransformer2DModel.forward` looks for it
  when given `joint_attention_kwargs={"ip_adapter_image_embeds": [tokens[:, None]]}`.
- We do not use `FluxIPAdapterMixin.load_ip_adapter`: it reads only XLabs-format checkpoints
  and wants a CLIP image encoder; the adapter saves and loads its own safetensors file instead.

Batches through a diffusers pipeline: `FluxPipeline.prepare_ip_adapter_image_embeds` stacks the
given embeds (batch x num_images_per_prompt) times, assuming one embed shared by every image, and
diffusers' processor then views the stack as [images, -1, ...]: with tokens of several identities
every image would attend to all of them at once. `attach` therefore hooks the transformer
(`fit_ip_batch`): the stack is taken back to the identities given and each image gets its own
(one identity: every image; one per prompt: that prompt's images; one per image: its own), and any
other count is refused with a message naming both numbers instead of blending identities.

`to_v_ip` starts at zero, so at step 0 (and at scale 0) the transformer's output is exactly the
base model's. A consequence worth knowing: at step 0 only `to_v_ip` receives a gradient; the
projection, `to_k_ip` and the encoder get theirs from the first update on.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from omniid.checkpoint import require_files, resolve_checkpoint
from omniid.checkpoint_trust import check_if_training_checkpoint

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _transformer_of(target):
    """A FluxTransformer2DModel, or a pipeline holding one as `.transformer`."""
    return getattr(target, "transformer", None) or target


def check_flux_target(target) -> None:
    """The adapter's IP layers are trained on FLUX's double-stream blocks: only a pipeline holding
    a FluxTransformer2DModel (FluxPipeline, FluxControlNetPipeline, ...) or the model itself takes them."""
    from diffusers import FluxTransformer2DModel

    if not isinstance(_transformer_of(target), FluxTransformer2DModel):
        raise TypeError(
            f"the Omni-ID adapter attaches to a FLUX pipeline (FluxPipeline, FluxControlNetPipeline) or a "
            f"FluxTransformer2DModel, not a {type(target).__name__}: its IP layers were trained against FLUX's "
            f"double-stream blocks (a UNet pipeline would need an adapter trained on that UNet)"
        )


def _fit_embeds(embeds: torch.Tensor, images: int) -> torch.Tensor:
    """One adapter's embeds [R, ...] -> [images, ...], row i the identity image i should get."""
    rows = embeds.shape[0]
    if rows == images:  # one row per image: training's call, or one identity stacked per image
        return embeds
    given = rows // images if rows % images == 0 else 0  # the pipeline stacks what it was given `images` times
    if given and torch.equal(embeds, embeds[:given].repeat(images, *[1] * (embeds.dim() - 1))):
        if images % given == 0:  # identity j for images j*(images/given) ...: a prompt's images come together
            return embeds[:given].repeat_interleave(images // given, 0)
        rows = given  # name the identities given, not the pipeline's stack of them
    raise ValueError(
        f"Omni-ID adapter: tokens of {rows} identities for a batch of {images} (prompts x num_images_per_prompt): "
        f"give 1 identity (every image gets it), one per prompt (each prompt's images get its identity) or one "
        f"per image, in that order; {rows} identities cannot be shared out evenly among {images} images")


def fit_ip_batch(module, args, kwargs):
    """Forward pre-hook of an attached transformer: `ip_adapter_image_embeds` fitted to the batch
    (`_fit_embeds`; see the module docstring), in a copy of joint_attention_kwargs."""
    attention = kwargs.get("joint_attention_kwargs")
    if not attention or "ip_adapter_image_embeds" not in attention:
        return None
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    embeds = attention["ip_adapter_image_embeds"]
    fitted = [_fit_embeds(e, hidden.shape[0]) for e in embeds] if isinstance(embeds, list) else embeds
    return args, {**kwargs, "joint_attention_kwargs": {**attention, "ip_adapter_image_embeds": fitted}}


class OmniIDAdapter(nn.Module):
    def __init__(self, num_tokens: int, token_dim: int, context_dim: int, hidden_size: int, num_blocks: int,
                 scale: float = 1.0):
        super().__init__()
        from diffusers.models.embeddings import IPAdapterFullImageProjection
        from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

        self.config = {"num_tokens": num_tokens, "token_dim": token_dim, "context_dim": context_dim,
                       "hidden_size": hidden_size, "num_blocks": num_blocks, "scale": scale}
        self.projection = IPAdapterFullImageProjection(image_embed_dim=token_dim, cross_attention_dim=context_dim)
        self.processors = nn.ModuleList(
            FluxIPAdapterAttnProcessor(hidden_size, context_dim, num_tokens=(num_tokens,), scale=scale)
            for _ in range(num_blocks)
        )
        for proc in self.processors:  # step 0 equals the base model
            for layer in proc.to_v_ip:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self._attached = None        # (transformer, original processors, original encoder_hid_proj, hook)

    @classmethod
    def for_transformer(cls, transformer, num_tokens: int, token_dim: int, context_dim: int | None = None,
                        scale: float = 1.0) -> "OmniIDAdapter":
        """Sized for `transformer`; context_dim defaults to its text context width (joint_attention_dim)."""
        cfg = transformer.config
        return cls(num_tokens, token_dim, context_dim or cfg.joint_attention_dim,
                   cfg.num_attention_heads * cfg.attention_head_dim, cfg.num_layers, scale)

    @property
    def scale(self) -> float:
        return float(self.processors[0].scale[0]) if len(self.processors) else self.config["scale"]

    def set_scale(self, scale: float) -> None:
        for proc in self.processors:
            proc.scale = [float(scale)]
        self.config["scale"] = float(scale)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D] -> context [B, N, context_dim] (what to_k_ip / to_v_ip read)."""
        return self.projection(tokens)

    def attach(self, target) -> "OmniIDAdapter":
        """Install the processors and projection on a FluxTransformer2DModel (or a FluxPipeline)."""
        check_flux_target(target)  # a clear error for a UNet pipeline, not an AttributeError
        transformer = _transformer_of(target)
        if self._attached is not None:
            if self._attached[0] is transformer:
                return self
            self.detach()
        blocks = transformer.transformer_blocks
        inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        if len(blocks) != len(self.processors) or inner != self.config["hidden_size"]:
            raise ValueError(f"adapter built for {len(self.processors)} double-stream blocks of width "
                             f"{self.config['hidden_size']}; this transformer has {len(blocks)} of width {inner}")
        from diffusers.models.embeddings import MultiIPAdapterImageProjection

        originals = [block.attn.processor for block in blocks]
        original_proj = transformer._modules.get("encoder_hid_proj")  # None on a plain FLUX
        for block, proc in zip(blocks, self.processors):
            block.attn.set_processor(proc)
        transformer.encoder_hid_proj = MultiIPAdapterImageProjection([self.projection])
        hook = transformer.register_forward_pre_hook(fit_ip_batch, with_kwargs=True)
        self._attached = (transformer, originals, original_proj, hook)
        return self

    def detach(self) -> None:
        """Put back exactly the processors (and encoder_hid_proj) the transformer had before attach."""
        if self._attached is None:
            return
        transformer, originals, original_proj, hook = self._attached
        hook.remove()
        for block, proc in zip(transformer.transformer_blocks, originals):
            block.attn.set_processor(proc)
        del transformer.encoder_hid_proj
        if original_proj is not None:
            transformer.encoder_hid_proj = original_proj
        self._attached = None

    @property
    def attached(self) -> bool:
        return self._attached is not None

    def state_dict_for_save(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes adapter.safetensors + adapter_config.json: loadable alone, no encoder needed."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict_for_save(), str(folder / ADAPTER_FILE))
        (folder / ADAPTER_CONFIG).write_text(json.dumps({**self.config, "scale": self.scale}, indent=2))
        return folder

    def load_weights(self, folder: str | Path) -> None:
        self.load_state_dict(load_file(str(Path(folder) / ADAPTER_FILE)))

    @classmethod
    def from_pretrained(cls, path: str | Path, device="cpu", dtype: torch.dtype | None = None) -> "OmniIDAdapter":
        """path: a run folder, its `checkpoints/latest` pointer, or a step folder (or a saved adapter folder).
        A training checkpoint is checked first, as omniid-eval checks it (CheckpointError if damaged)."""
        folder = resolve_checkpoint(path)
        require_files(folder, (ADAPTER_CONFIG, ADAPTER_FILE), "no Omni-ID adapter here",
                      "only flow-stage checkpoints hold one")
        check_if_training_checkpoint(folder)
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
        adapter = cls(**config)
        adapter.load_weights(folder)
        return adapter.to(device=device, dtype=dtype).eval()
