"""Request images: PNG (8/16-bit grayscale) and .npy in, float32 as the trainer feeds them."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from pivot_trainer.serve.errors import InvalidImage, PayloadTooLarge
from pivot_trainer.serve.images import decode, encode_mask

MAX = 1 << 20


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(buf, format="PNG")
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def refused(data: bytes, fmt: str | None = None) -> dict[str, object]:
    with pytest.raises(InvalidImage) as info:
        decode(data, fmt=fmt, max_pixels=MAX, index=2)
    assert info.value.status == 400 and info.value.code == "INVALID_IMAGE"
    assert info.value.details["index"] == 2
    return info.value.details


def test_png_8_and_16_bit_and_npy_give_the_stored_values() -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (8, 12), dtype=np.uint8)
    want = u8.astype(np.float32)
    for data in (png(u8), png(u8.astype(np.uint16)), npy(u8), npy(want), npy(u8.astype(np.int64))):
        got = decode(data, fmt=None, max_pixels=MAX, index=0)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    wide = rng.integers(0, 65536, (4, 4), dtype=np.uint16)
    np.testing.assert_array_equal(decode(png(wide), fmt="png", max_pixels=MAX, index=0), wide)
    # A float npy passes unchanged (what the synthetic-data trainer feeds its model).
    floats = rng.standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(decode(npy(floats), fmt="npy", max_pixels=MAX, index=0), floats)
    # Fortran order and float64 are fine too.
    np.testing.assert_array_equal(
        decode(
            npy(np.asfortranarray(floats.astype(np.float64))), fmt=None, max_pixels=MAX, index=0
        ),
        floats,
    )


def test_what_is_not_a_grayscale_png_or_a_2d_npy_is_refused() -> None:
    gray = np.zeros((8, 8), np.uint8)
    assert refused(b"GIF89a....")["reason"] == "unknown_format"
    assert refused(png(gray), fmt="npy")["reason"] == "format_mismatch"
    rgb = refused(png(np.zeros((8, 8, 3), np.uint8)))
    assert rgb["reason"] == "unsupported_png" and rgb["color_type"] == 2
    assert refused(png(gray, "LA"))["color_type"] == 4
    assert refused(png(gray, "P"))["color_type"] == 3
    assert refused(png(gray, "1"))["bit_depth"] == 1
    assert refused(png(gray)[:40])["reason"] == "corrupt"  # truncated after the header
    assert refused(b"\x89PNG\r\n\x1a\n")["reason"] == "corrupt"
    assert refused(npy(np.zeros((2, 8, 8), np.float32)))["reason"] == "not_2d"
    assert refused(npy(np.zeros(16, np.float32)))["shape"] == [16]
    assert refused(npy(np.array([[1 + 2j] * 4] * 4)))["reason"] == "dtype"
    assert refused(npy(np.array([["a"] * 4] * 4)))["reason"] == "dtype"
    pickled = io.BytesIO()
    np.save(pickled, np.array([[object()] * 4] * 4), allow_pickle=True)
    assert refused(pickled.getvalue())["reason"] == "corrupt"  # never unpickled
    assert refused(npy(np.full((4, 4), np.nan, np.float32)))["reason"] == "not_finite"
    assert refused(npy(np.zeros((0, 4), np.float32)))["reason"] == "shape"


@pytest.mark.parametrize("shape", [(6, 8), (8, 10), (2, 2)])
def test_sizes_the_unet_cannot_take_are_refused_with_the_rule(shape: tuple[int, int]) -> None:
    for data in (png(np.zeros(shape, np.uint8)), npy(np.zeros(shape, np.float32))):
        details = refused(data)
        assert details == {
            "index": 2,
            "reason": "shape",
            "shape": list(shape),
            "multiple_of": 4,
        }


def test_a_png_over_the_pixel_limit_is_refused_before_decoding() -> None:
    # A 40000 x 40000 PNG of zeros compresses to a few hundred KiB: its header is enough to
    # refuse it, without the 1.6 GB its pixels would take.
    width = height = 40_000
    row = b"\x00" + bytes(width)
    raw = zlib.compress(row * 64, 9)  # the first rows only: decoding must never get far
    chunk = lambda kind, body: (  # noqa: E731
        len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    )
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw)
    with pytest.raises(PayloadTooLarge) as info:
        decode(data, fmt=None, max_pixels=MAX, index=0)
    assert info.value.status == 413
    assert info.value.details == {"index": 0, "shape": [height, width], "max_pixels": MAX}
    with pytest.raises(PayloadTooLarge):
        decode(npy(np.zeros((1028, 1024), np.float32)), fmt=None, max_pixels=MAX, index=0)


def test_the_mask_is_an_8_bit_png_of_the_map() -> None:
    probs = np.arange(256, dtype=np.uint8).reshape(16, 16)
    with Image.open(io.BytesIO(encode_mask(probs))) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), probs)
