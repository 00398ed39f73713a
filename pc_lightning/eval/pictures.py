"""Labelled pictures for TensorBoard: a grid of tiles with row labels, column titles and a
colour key, so that a picture reads without the code."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def labelled_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], titles: Sequence[str] = (),
                  key: Sequence[tuple[str, Sequence[int]]] = (), label_width: int = 52, gap: int = 4) -> np.ndarray:
    """Tiles (h, w, 3) uint8, all of one size, in labelled rows: RGB (H, W, 3) uint8.

    rows: (label, tiles) per row; titles: one per column, drawn above it; key: (name,
    colour) pairs drawn as swatches under the grid."""
    from PIL import Image, ImageDraw

    th, tw = rows[0][1][0].shape[:2]
    n_cols = max(len(t) for _, t in rows)
    head = 14 if titles else 0
    key_h = 16 if key else 0
    width = label_width + n_cols * (tw + gap)
    key_w = sum(26 + 6 * len(name) for name, _ in key) + 4
    img = Image.new("RGB", (max(width, key_w), head + len(rows) * (th + gap) + key_h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for j, title in enumerate(titles):
        draw.text((label_width + j * (tw + gap) + 2, 1), title, fill=(0, 0, 0))
    for r, (label, tiles) in enumerate(rows):
        y = head + r * (th + gap)
        draw.text((2, y + th // 2 - 5), label, fill=(0, 0, 0))
        for j, tile in enumerate(tiles):
            img.paste(Image.fromarray(np.ascontiguousarray(tile)), (label_width + j * (tw + gap), y))
    x, y = 2, head + len(rows) * (th + gap) + 2
    for name, rgb in key:
        draw.rectangle([x, y + 2, x + 9, y + 11], fill=tuple(int(v) for v in rgb), outline=(0, 0, 0))
        draw.text((x + 12, y), name, fill=(0, 0, 0))
        x += 26 + 6 * len(name)
    return np.array(img)
