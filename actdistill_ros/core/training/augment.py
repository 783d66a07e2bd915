"""Image augmentation for behaviour cloning from pixels.

Random shifts (DrQ-style: pad by replicating the border, crop back at a random offset) are the
cheapest regulariser of visuomotor policies: small demonstration sets are otherwise memorised
pixel for pixel (seen on the simulated reach task: a low training loss, a held-out loss close to
predicting the mean).
"""

from __future__ import annotations

import torch


def random_shift(pixels: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, H, W, C] images, each moved by its own offset in [-max_shift, max_shift]^2
    (border pixels repeat into the gap). ``max_shift`` 0 returns the input unchanged."""
    if max_shift <= 0:
        return pixels
    if pixels.ndim != 4:
        raise ValueError(f"random_shift expects [B, H, W, C] images, got shape {list(pixels.shape)}")
    b, h, w, _ = pixels.shape
    offsets = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator).to(pixels.device)
    rows = (torch.arange(h, device=pixels.device)[None, :] + offsets[:, :1]).clamp(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=pixels.device)[None, :] + offsets[:, 1:]).clamp(0, w - 1)  # [B, W]
    batch = torch.arange(b, device=pixels.device)[:, None, None]
    return pixels[batch, rows[:, :, None], cols[:, None, :]]


def batch_generator(seed: int, rows: torch.Tensor) -> torch.Generator:
    """A generator determined by the run's seed and the batch's sample ids: the same batch gets
    the same augmentation after a resume (batch order is already a function of seed and epoch)."""
    weights = torch.arange(1, len(rows) + 1, dtype=torch.int64)
    key = int((rows.cpu().to(torch.int64) * weights).sum()) + seed * 1_000_003
    return torch.Generator().manual_seed(key % (2**63))
