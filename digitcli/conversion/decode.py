"""Decode: an image file -> its grey levels, with EXIF orientation, alpha and limits.

Only regular files in a few formats are opened, never waiting on them; decompression bombs,
oversized chunks and huge sides are refused; large images are reduced while they are read.
Every way a file can fail has one wording (:func:`image_error`).
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import stat
import warnings
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitcli.errors import ImageError

#: Refuse images with more pixels than this (decompression bombs).
MAX_PIXELS = 64_000_000


#: Refuse images with a side longer than this (a 1 x 64,000,000 image is a bomb too).
MAX_SIDE = 65_535


#: Images are reduced so that their longest side is at most this before the conversion.
WORK_SIZE = 512

#: The key of an opened image's ``info`` that holds its upright size before reduction.
SOURCE_SIZE = "digitcli_source_size"


#: The formats that are opened, all decoded inside this process: nothing else is handed to
#: Pillow (EPS would run Ghostscript; ICO and ICNS hold images of their own). JPEG covers
#: the multi-picture JPEGs (MPO) of phones.
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM")


#: A PNG's chunks other than image data are read whole by Pillow: at most this many bytes
#: of them in all, and at most this many chunks.
MAX_PNG_EXTRA = 16 * 2**20


MAX_PNG_CHUNKS = 100_000


#: Files up to this size are read into memory at once.
SMALL_FILE = 1 << 16


#: Larger images are reduced a strip of about STRIP_ROWS rows at a time, never copied whole
#: (a 64 MP RGBA PNG: 294,000 KB peak with 32 rows, 307,000 with 256).
STRIP_PIXELS = 8_000_000


STRIP_ROWS = 32


#: Pillow decodes WebP (animated or not) through an RGBA canvas and copies of it: about
#: 16 bytes a pixel. More than this many pixels would need more than 300 MB.
MAX_WEBP_PIXELS = 16_000_000


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


_PNG_DATA = (b"IDAT", b"fdAT")  # image data: streamed, never read whole


def open_image(path: str | os.PathLike[str], *, max_side: int = WORK_SIZE) -> Image.Image:
    """Open an image file, apply its EXIF orientation and bound its size.

    Only regular files are opened, without ever waiting (a FIFO or a device is refused),
    and only in the :data:`FORMATS`, whatever the file's name says.

    Parameters
    ----------
    path : str or path-like
        A file in one of the :data:`FORMATS`; animated files give their first frame.
    max_side : int
        Reduce the image so that its longest side is at most this (:data:`WORK_SIZE` for a
        digit; ``read`` keeps more of a long line).

    Returns
    -------
    PIL.Image.Image
        The decoded image, upright, longest side at most `max_side`. Its
        ``info[SOURCE_SIZE]`` is the upright size before any reduction.

    Raises
    ------
    ImageError
        If the file is missing, not a regular file, not an image, truncated, has more than
        :data:`MAX_PIXELS` pixels, or a PNG whose other chunks are too large.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns about decompression bombs (checked below) and corrupt EXIF data
            # (the image is still read): neither belongs on the user's terminal.
            warnings.simplefilter("ignore")
            fd = _open_regular(path)
            try:
                # A small file is read at once (one read instead of Pillow's many).
                head = _read_head(fd, SMALL_FILE + 1)
                formats = _formats_for(head)
                if len(head) <= SMALL_FILE:
                    # Every chunk of a file read whole is as small as the file: no check.
                    return _open_bounded(io.BytesIO(head), formats, max_side)
                os.lseek(fd, 0, os.SEEK_SET)
                with os.fdopen(fd, "rb") as fp:
                    fd = -1  # closed with fp
                    _check_png_chunks(fp)
                    return _open_bounded(fp, formats, max_side)
            finally:
                if fd >= 0:
                    os.close(fd)
    except Exception as exc:  # noqa: BLE001 - an odd file is that file's error, never a crash
        raise image_error(exc) from None


def image_error(exc: BaseException) -> ImageError:
    """The one wording of each way a file can fail to be read.

    Parameters
    ----------
    exc : BaseException
        What reading or converting the file raised.

    Returns
    -------
    ImageError
        A short reason, the same for the same cause whatever raised it.
    """
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return ImageError(f"too large: {found.group(1) if found else 'too many'} pixels")
    if isinstance(exc, UnidentifiedImageError):
        return ImageError("cannot identify image file")
    if isinstance(exc, FileNotFoundError):
        return ImageError("file not found")
    if isinstance(exc, PermissionError):
        return ImageError("permission denied")
    if isinstance(exc, IsADirectoryError):
        return ImageError("is a folder")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        if exc.errno == errno.ENXIO:  # a socket: no reading it
            return ImageError("not a regular file")
        if "truncated" in text.lower() or "broken data stream" in text:
            return ImageError("truncated file")
        return ImageError(f"cannot read image: {text}")
    if isinstance(exc, (ValueError, SyntaxError, EOFError, MemoryError)):
        return ImageError(f"cannot decode image: {text}")
    return ImageError(f"cannot read image: {type(exc).__name__}: {text}")


def _open_regular(path: str | os.PathLike[str]) -> int:
    """A file descriptor of a regular file, open for reading; never blocks (a FIFO is refused)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError("is a folder")
        if not stat.S_ISREG(mode):
            raise ImageError("not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read_head(fd: int, size: int) -> bytes:
    """Up to `size` bytes from the start of an open file (fewer only at its end).

    Plain ``os.read`` calls: a file object costs more than reading a small file.
    """
    parts = []
    while size > 0:
        part = os.read(fd, size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _check_png_chunks(fp: IO[bytes]) -> None:
    """Refuse a PNG whose chunks besides the image data are too large, before Pillow reads them.

    Pillow reads each such chunk whole; here only the chunks' 8-byte headers are read.
    """
    if fp.read(8) != _PNG_SIGNATURE:
        fp.seek(0)
        return
    extra = 0
    for _ in range(MAX_PNG_CHUNKS):
        header = fp.read(8)
        if len(header) < 8:
            break
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind not in _PNG_DATA:
            extra += length
            if extra > MAX_PNG_EXTRA:
                raise ImageError(f"too large: PNG chunks of {extra} bytes besides the image")
        if kind == b"IEND":
            break
        fp.seek(length + 4, os.SEEK_CUR)  # the chunk's data and its CRC
    else:
        raise ImageError(f"cannot read image: more than {MAX_PNG_CHUNKS} PNG chunks")
    fp.seek(0)


#: How files of the :data:`FORMATS` start: ``(format, its Pillow plugin, first bytes)``.
#: A file that starts so is offered to that format alone, and only its plugin is imported
#: (all of them take 13 ms); any other file is offered to all the FORMATS, in their order.
SIGNATURES = (
    ("PNG", "Png", (_PNG_SIGNATURE,)),
    ("JPEG", "Jpeg", (b"\xff\xd8\xff",)),
    ("GIF", "Gif", (b"GIF8",)),
    ("BMP", "Bmp", (b"BM",)),
    ("TIFF", "Tiff", (b"II*\0", b"MM\0*")),
    ("WEBP", "WebP", (b"RIFF",)),
    ("PPM", "Ppm", tuple(b"P%d" % i for i in range(1, 7))),
)
#: Every first bytes of :data:`SIGNATURES`: a file that starts so is an image.
IMAGE_PREFIXES = tuple(prefix for _, _, prefixes in SIGNATURES for prefix in prefixes)


def _formats_for(head: bytes) -> tuple[str, ...]:
    """The formats to offer a file that starts with `head` (see :data:`SIGNATURES`)."""
    for name, plugin, prefixes in SIGNATURES:
        if head.startswith(prefixes):
            _plugin(plugin)
            return (name,)
    return _formats()


@functools.cache
def _plugin(name: str) -> None:
    import importlib

    importlib.import_module(f"PIL.{name}ImagePlugin")


@functools.cache
def _formats() -> tuple[str, ...]:
    """:data:`FORMATS`, their Pillow plugins loaded (only the common ones are, at first)."""
    for plugin in ("Bmp", "Gif", "Jpeg", "Png", "Ppm", "Tiff", "WebP"):
        _plugin(plugin)
    return FORMATS


def _open_bounded(fp: IO[bytes], formats: tuple[str, ...], max_side: int) -> Image.Image:
    """Decode the first frame at a bounded size and apply the EXIF orientation."""
    with Image.open(fp, formats=formats) as src:
        n = src.width * src.height
        if n > MAX_PIXELS:
            raise ImageError(f"too large: {n} pixels")
        if max(src.size) > MAX_SIDE:  # Pillow keeps a pointer a row: 512 MB for 64M rows
            raise ImageError(f"too large: {src.width}x{src.height} pixels")
        if n == 0:
            raise ImageError("empty image: 0 pixels")
        scale = max(src.size) / max_side
        if scale > 1:
            # JPEG (and MPO) decode straight at a reduced scale; other formats ignore this.
            mode = "L" if src.mode in ("L", "RGB") else src.mode
            src.draft(mode, (int(src.width / scale) + 1, int(src.height / scale) + 1))
        if src.format == "WEBP" and n > MAX_WEBP_PIXELS:
            raise ImageError(f"too large: {n} pixels (a WebP of more than {MAX_WEBP_PIXELS})")
        src.load()
        img = _shrunk(src, max_side) if n > STRIP_PIXELS else src
        # Only a rotated or mirrored image needs the (copying) transpose.
        orientation = _orientation(src)
        if orientation in range(2, 9):
            img = ImageOps.exif_transpose(img)
        size = src.size[::-1] if orientation in range(5, 9) else src.size
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BOX)
    img.info[SOURCE_SIZE] = size
    return img


def _shrunk(img: Image.Image, max_side: int) -> Image.Image:
    """A large image reduced by a whole factor (box means) a strip at a time.

    The result is ``img.reduce(factor)``, still at least `max_side` wide or high, but no
    full-size copy is ever made (reducing an image with alpha copies it whole).
    """
    factor = max(1, max(img.size) // max_side)
    if factor == 1:
        return img
    w, h = img.size
    # Modes that reduce() does not take are converted, a strip at a time.
    mode = {"P": "RGBA", "PA": "RGBA", "1": "L"}.get(img.mode, img.mode)
    if mode.startswith("I;16"):
        mode = "I"
    out = Image.new(mode, (-(-w // factor), -(-h // factor)))
    rows = factor * max(1, STRIP_ROWS // factor)
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        out.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return out


#: The EXIF tag of the orientation (PIL.ExifTags.Base.Orientation, without importing it).
_EXIF_ORIENTATION = 0x0112
#: Where Pillow finds an orientation: EXIF blocks, PNG's text copy of one, XMP packets.
_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored), read only when the file has metadata."""
    if not hasattr(img, "tag_v2") and not any(key in img.info for key in _ORIENTATION_KEYS):
        return 1  # most files: parsing an empty EXIF block would cost more than the checks
    return img.getexif().get(_EXIF_ORIENTATION, 1)


def scaled(gray: np.ndarray) -> np.ndarray:
    """Grey levels from :func:`gray_pixels` (one image or a stack) as float32 in 0..1.

    Parameters
    ----------
    gray : numpy.ndarray
        uint8 0..255, or float32 0..1 (returned as it is).

    Returns
    -------
    numpy.ndarray
        float32, same shape, 1 = white.
    """
    return gray.astype(np.float32) / np.float32(255) if gray.dtype == np.uint8 else gray


def gray_pixels(img: Image.Image) -> np.ndarray:
    """Luminance, with transparency flattened onto a contrasting ground.

    8-bit grey levels stay uint8 0..255 (:func:`scaled` makes them 0..1 later, a stack at
    once); 16-bit, 32-bit and float images are stretched to float32 0..1 (1 = white).

    Parameters
    ----------
    img : PIL.Image.Image
        Any mode (1, L, P, LA, RGB, RGBA, CMYK, I;16, I, F ...).

    Returns
    -------
    numpy.ndarray
        ``(height, width)``: uint8 0..255, or float32 0..1.
    """
    if img.mode == "L":  # most files; np.asarray(img) would go through tobytes() too
        return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(img.height, img.width)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.ones_like(a)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        lum = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        if alpha.min() < 1.0:
            # Ink drawn on a transparent ground: flatten onto white, unless the opaque
            # strokes are light, in which case onto black, so the strokes keep contrast.
            weight = alpha.sum()
            stroke_lum = float((lum * alpha).sum() / weight) if weight else 1.0
            ground = 0.0 if stroke_lum > 0.5 else 1.0
            return lum * alpha + ground * (1.0 - alpha)
        return lum
    return gray_pixels(img.convert("L"))
