"""Request images in (PNG 8/16-bit grayscale, .npy 2-D arrays), probability masks out.

An image reaches the model as its stored values in float32, which is exactly what the trainer
feeds it: synthetic images are raw floats and npz shards go through `.float()` with no scaling
(data.read_shards). So an 8-bit PNG's 200 is 200.0, a 16-bit PNG's 51400 is 51400.0, and a
float .npy passes unchanged; an npy of the same integers gives the same tensor as the PNG.
The format is told by the bytes' magic, never by a file name; a stated format must agree.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from pivot_trainer.serve.errors import InvalidImage, PayloadTooLarge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("png", "npy")
# The UNet pools twice (model.py), so height and width must be multiples of 4;
# tests/unit/serve pins this against the model itself.
UNET_STRIDE = 4
_GRAY = 0  # PNG colour type of plain grayscale (no alpha, no palette)


def sniff(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(NPY_MAGIC):
        return "npy"
    return None


def decode(data: bytes, *, fmt: str | None, max_pixels: int, index: int) -> np.ndarray:
    """A C-contiguous float32 (H, W) array the UNet can take; InvalidImage (400) says why not,
    PayloadTooLarge (413) when it has more than `max_pixels` pixels."""
    found = sniff(data)
    where: dict[str, Any] = {"index": index}
    if found is None:
        raise InvalidImage(
            f"image {index} is neither a PNG nor a .npy array",
            {**where, "reason": "unknown_format", "formats": list(FORMATS)},
        )
    if fmt is not None and fmt != found:
        raise InvalidImage(
            f"image {index} is said to be {fmt} but its bytes are {found}",
            {**where, "reason": "format_mismatch", "format": fmt, "found": found},
        )
    array = _png(data, max_pixels, where) if found == "png" else _npy(data, where)
    return _checked(array, max_pixels, where)


def _png(data: bytes, max_pixels: int, where: dict[str, Any]) -> np.ndarray:
    # IHDR is the first chunk (the PNG spec): read size, depth and colour type before
    # decoding, so an oversized or colour image costs nothing to refuse.
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InvalidImage(
            f"image {where['index']} is not a readable PNG", {**where, "reason": "corrupt"}
        )
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour != _GRAY or depth not in (8, 16):
        raise InvalidImage(
            f"image {where['index']} is a PNG of colour type {colour} at {depth} bits; "
            "only 8- or 16-bit grayscale PNGs are accepted",
            {**where, "reason": "unsupported_png", "color_type": colour, "bit_depth": depth},
        )
    _limit(height, width, max_pixels, where)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            img.load()
            array = np.asarray(img)
    except Exception as exc:  # Pillow raises many types for truncated or corrupt data
        raise InvalidImage(
            f"image {where['index']} is not a readable PNG: {exc}", {**where, "reason": "corrupt"}
        ) from None
    # Pillow gives 16-bit grayscale as uint16 ("I;16") or int32 ("I"): both hold the samples.
    return array


def _npy(data: bytes, where: dict[str, Any]) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # ValueError for pickles and bad headers, EOFError, ...
        raise InvalidImage(
            f"image {where['index']} is not a readable .npy array: {exc}",
            {**where, "reason": "corrupt"},
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        dtype = str(getattr(array, "dtype", type(array).__name__))
        raise InvalidImage(
            f"image {where['index']} has dtype {dtype}; a real-valued numeric array is needed",
            {**where, "reason": "dtype", "dtype": dtype},
        )
    return array


def _limit(height: int, width: int, max_pixels: int, where: dict[str, Any]) -> None:
    if height * width > max_pixels:
        raise PayloadTooLarge(
            f"image {where['index']} has {height}x{width} pixels; at most {max_pixels} are allowed",
            {**where, "shape": [height, width], "max_pixels": max_pixels},
        )


def _checked(array: np.ndarray, max_pixels: int, where: dict[str, Any]) -> np.ndarray:
    shape = [int(n) for n in array.shape]
    if array.ndim != 2:
        raise InvalidImage(
            f"image {where['index']} has shape {shape}; a 2-D (height, width) image is needed",
            {**where, "reason": "not_2d", "shape": shape},
        )
    height, width = shape
    _limit(height, width, max_pixels, where)
    if height == 0 or width == 0 or height % UNET_STRIDE or width % UNET_STRIDE:
        raise InvalidImage(
            f"image {where['index']} is {height}x{width}; height and width must be positive "
            f"multiples of {UNET_STRIDE} (the UNet halves them twice)",
            {**where, "reason": "shape", "shape": shape, "multiple_of": UNET_STRIDE},
        )
    out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidImage(
            f"image {where['index']} holds NaN or infinite values",
            {**where, "reason": "not_finite"},
        )
    return out


def encode_mask(probs_u8: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a (H, W) uint8 map (255 = probability 1)."""
    from PIL import Image

    buf = io.BytesIO()
    # compress_level 1: masks are small and the encoder's time is the request's latency.
    Image.fromarray(probs_u8).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
