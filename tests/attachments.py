"""Files for attachment tests: real images made with Pillow, and files that only pretend."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (24, 16), color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_upload(name: str = "picture.png", size: tuple[int, int] = (24, 16)) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes("PNG", size), content_type="image/png")


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


def html_as_png(name: str = "innocent.png") -> SimpleUploadedFile:
    """An HTML page with an image's name and declared type: must never be served as either."""
    return SimpleUploadedFile(name, HTML, content_type="image/png")


def png_header(width: int, height: int, name: str = "bomb.png") -> SimpleUploadedFile:
    """A few bytes that announce a `width` x `height` PNG (signature, IHDR, IEND), with no pixels at all."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    return SimpleUploadedFile(name, data, content_type="image/png")
