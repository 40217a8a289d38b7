"""User images read safely: the format and size from the header alone, refused above a pixel cap
before anything is decoded (a 657 KB PNG can hold 13,000 x 13,000 pixels, 500 MB decoded).

Uploads are checked with `image_header` when they arrive, specs when they are submitted, and the
render checks again before it decodes (`checked_image`), so no decode of a user's image ever
passes `MAX_IMAGE_PIXELS`. Every refusal is an `ImageInvalid` (422), never an OS error.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from cluster.errors import StudioError

MAX_IMAGE_PIXELS = 40_000_000
"""8K UHD (33 MP) fits, with room; a film frame is at most 1920 x 1080."""

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class ImageInvalid(StudioError):
    slug, status, title = "image-invalid", 422, "Unusable image"


@dataclass(frozen=True)
class ImageHeader:
    content_type: str
    width: int
    height: int


def image_header(source: bytes | Path, where: str = "the image") -> ImageHeader:
    """The type and size read from the header; ImageInvalid when it is not a PNG, JPEG or WebP
    image the library can parse, or has more than `MAX_IMAGE_PIXELS` pixels."""
    too_large = ImageInvalid(f"{where} has more than {MAX_IMAGE_PIXELS:,} pixels")
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
    with stream, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the cap below is ours
        try:
            with Image.open(stream, formats=list(FORMATS)) as image:
                width, height = image.size
                content_type = FORMATS[image.format or ""]
        except Image.DecompressionBombError:  # PIL's own cap, above ours
            raise too_large from None
        # SyntaxError is what PIL's plugins raise on a broken header.
        except (UnidentifiedImageError, OSError, SyntaxError):
            raise ImageInvalid(f"{where} is not a readable image (PNG, JPEG or WebP)") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise too_large
    return ImageHeader(content_type, width, height)


def checked_image(data: bytes, where: str = "the image") -> bytes:
    """`data` itself, once its header says it is an image within the pixel cap."""
    image_header(data, where)
    return data
