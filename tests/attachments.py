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
