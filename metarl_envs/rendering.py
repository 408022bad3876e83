"""Small drawing helpers shared by the families' ``rgb_array`` renders.

Renders are deliberately tiny cell maps blown up with nearest-neighbour scaling: enough for a
person to read the state at a glance, cheap enough to call every step.
"""

from __future__ import annotations

import numpy as np

#: Colours used by every family, so that the same thing looks the same everywhere.
PALETTE: dict[str, tuple[int, int, int]] = {
    "background": (24, 24, 28),
    "floor": (150, 150, 150),
    "wall": (60, 60, 70),
    "agent": (220, 40, 40),
    "goal": (40, 200, 70),
    "up": (60, 120, 235),
    "down": (240, 150, 30),
    "hole": (10, 10, 60),
    "penalty": (160, 60, 160),
    "start": (240, 240, 240),
}


def canvas(height: int, width: int, colour: str = "background") -> np.ndarray:
    """A ``(height, width, 3)`` uint8 cell map filled with a palette colour."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = PALETTE[colour]
    return img


def upscale(cells: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a cell map by an integer factor."""
    return np.repeat(np.repeat(cells, scale, axis=0), scale, axis=1)


def digit_glyphs() -> dict[int, np.ndarray]:
    """3x5 bitmaps for the digits 0-9 (used to print labels on grid cells)."""
    rows = {
        0: ["111", "101", "101", "101", "111"],
        1: ["010", "110", "010", "010", "111"],
        2: ["111", "001", "111", "100", "111"],
        3: ["111", "001", "111", "001", "111"],
        4: ["101", "101", "111", "001", "001"],
        5: ["111", "100", "111", "001", "111"],
        6: ["111", "100", "111", "101", "111"],
        7: ["111", "001", "010", "010", "010"],
        8: ["111", "101", "111", "101", "111"],
        9: ["111", "101", "111", "001", "111"],
    }
    return {d: np.array([[c == "1" for c in r] for r in bitmap]) for d, bitmap in rows.items()}


def stamp_number(img: np.ndarray, number: int, top: int, left: int, colour=(0, 0, 0)) -> None:
    """Draw ``number`` (one or two digits) in 3x5 glyphs at ``(top, left)`` of an image, in place."""
    glyphs = digit_glyphs()
    for k, ch in enumerate(str(number)):
        mask = glyphs[int(ch)]
        region = img[top : top + 5, left + 4 * k : left + 4 * k + 3]
        region[mask[: region.shape[0], : region.shape[1]]] = colour
