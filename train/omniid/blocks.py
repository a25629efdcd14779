"""Pre-norm attention blocks shared by the Omni-ID encoder and the MTD decoder.

Attention goes through `F.scaled_dot_product_attention` so that CUDA picks a fused kernel
(flash / memory-efficient) under bf16. Key padding masks say which keys are real.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, C] queries; context: [B, S, C] keys/values; key_valid: [B, S] bool (True = real)."""
        b, n, c = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).view(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Self-attention (context=None) or cross-attention (context given) block, then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool):
        super().__init__()
        self.cross = cross
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_q(x)
        kv = self.norm_kv(context) if self.cross else q
        x = x + self.attn(q, kv, key_valid if self.cross else None)
        return x + self.mlp(self.norm_mlp(x))


class BlockStack(nn.Module):
    """`cross` cross-attention blocks over a context, then `self_` self-attention blocks."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: int, self_: int):
        super().__init__()
        self.cross_blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, True) for _ in range(cross))
        self.self_blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, False) for _ in range(self_))
        self.norm = nn.LayerNorm(dim)
        self.grad_checkpointing = False

    def _run(self, block: Block, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, C]; context: [B, S, C]; key_valid: [B, S] -> [B, N, C]."""
        for block in self.cross_blocks:
            x = self._run(block, x, context, key_valid)
        for block in self.self_blocks:
            x = self._run(block, x)
        return self.norm(x)
