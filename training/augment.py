"""Training-time image augmentation on batches of flattened 28x28 images."""

import torch
import torch.nn.functional as F

SIDE = 28  # images are SIDE x SIDE, flattened to rows of SIDE * SIDE pixels


def shift_each_image(x: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Move every image of a batch by its own random (dy, dx), each in [-limit, limit].

    One shift per batch (fit.shift_images) shows the model each step's images at a single
    position; per image, every step mixes positions, which is what teaches an MLP (no
    convolution, so no built-in tolerance to translation) that a garment a pixel off is the same
    garment. Pixels moved past the edge are dropped and zeros (the background) come in. Row order
    is kept, so labels stay aligned.

    Images are padded once and cropped at one of (2 * limit + 1)^2 offsets, one slice per offset:
    ~0.1 s per Fashion-MNIST epoch, a quarter of one gather with per-pixel indices.
    """
    n, side = len(x), 2 * limit + 1
    padded = F.pad(x.view(n, SIDE, SIDE), (limit, limit, limit, limit))
    # crop offset (oy, ox) moves the content by (limit - oy, limit - ox)
    offset = torch.randint(0, side * side, (n,), generator=generator)
    out = torch.empty(n, SIDE, SIDE, dtype=x.dtype)
    for k in range(side * side):
        rows = (offset == k).nonzero().squeeze(1)
        oy, ox = divmod(k, side)
        # index_select/index_copy_: the same rows as padded[rows], without advanced indexing
        out.index_copy_(0, rows, padded.index_select(0, rows)[:, oy : oy + SIDE, ox : ox + SIDE])
    return out.reshape(n, SIDE * SIDE)
