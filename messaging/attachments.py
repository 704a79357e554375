"""Attachments: storing an upload, serving it safely, and removing what is never used.

An upload starts unused (`Attachment.message` NULL) and belongs to its
uploader and room; `messages_create` (messaging.services) attaches it to
exactly one message. The stored file has a random name (`attachment_path`);
the sender's file name, cleaned here, only ever reaches a client in JSON and
in `Content-Disposition`. Only PNG, JPEG, GIF and WebP files that Pillow has
parsed and verified are `is_image`, and only those are ever served inline.
"""

import hashlib
import logging
import mimetypes
import re
import threading
import time
import unicodedata
from datetime import timedelta
from typing import Any, overload
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import Storage
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from PIL import Image

from accounts.models import User
from common.errors import BadRequest, NotFound, RoomLocked, TooLarge
from common.ratelimit import rate_limit_hit
from rooms.models import Room
from rooms.selectors import room_check_readable

from .models import Attachment

logger = logging.getLogger(__name__)

# At most this many files on one message.
MAX_ATTACHMENTS = 10

# Pillow format -> the content type it is served as. Nothing else is an image here.
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# The extension a verified image's name is given, so that a saved copy opens as what it is.
IMAGE_EXTENSIONS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"), "GIF": (".gif",), "WEBP": (".webp",)}
# Larger pictures are stored as plain files: a decompression bomb is never decoded
# by anyone's browser, and nobody needs a 50-megapixel thumbnail in a chat.
MAX_IMAGE_PIXELS = 50_000_000

# Cleaned file names keep at most this many code points (extension included).
MAX_NAME_CHARS = 120
MAX_EXTENSION_CHARS = 16
FALLBACK_NAME = "file"
# Served with any other name these types could render or run: never claimed for a file
# whose content was not verified as an image.
_INLINE_TYPES = frozenset(IMAGE_TYPES.values())
OCTET_STREAM = "application/octet-stream"

# Python's built-in table only, not the machine's /etc/mime.types: the same
# name gets the same type on every server.
_mime = mimetypes.MimeTypes()
_ENCODED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}

# Characters Windows (and some browsers' download code) refuse in file names.
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*]')
_SPACES = re.compile(r"\s+")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,%d}$" % MAX_EXTENSION_CHARS)  # noqa: UP031


def clean_filename(name: Any) -> str:
    """A file name safe to show and to offer as a download name.

    Drops any directory part, control and format characters (bidi overrides,
    zero-width joiners), characters that are illegal on common file systems,
    leading dots (hidden files) and trailing dots and spaces; folds white
    space; keeps at most MAX_NAME_CHARS code points, the extension included
    (a short alphanumeric one survives truncation). Nothing left: "file".
    """
    if not isinstance(name, str):
        return FALLBACK_NAME
    name = unicodedata.normalize("NFC", name)
    # Either kind of separator: a browser on Windows sends C:\\Users\\me\\x.png.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: controls (NUL, newlines); Cf: format (U+202E and the other bidi
    # controls, zero-width characters); Cs/Co/Cn: surrogates, private use, unassigned.
    name = "".join(" " if ch.isspace() else ch for ch in name if unicodedata.category(ch)[0] != "C" or ch.isspace())
    name = _UNSAFE_CHARS.sub("_", name)
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip().rstrip(". ")
    if not name:
        return FALLBACK_NAME
    if len(name) > MAX_NAME_CHARS:
        match = _EXTENSION.search(name)
        extension = match.group(0) if match else ""
        stem = name[: len(name) - len(extension)][: MAX_NAME_CHARS - len(extension)].rstrip(". ")
        name = f"{stem or FALLBACK_NAME}{extension}"
    return name


def _with_extension(name: str, image_format: str) -> str:
    """`name` ending in the verified format's extension (x.html holding a PNG becomes x.html.png)."""
    extensions = IMAGE_EXTENSIONS[image_format]
    if name.lower().endswith(extensions):
        return name
    return clean_filename(f"{name[: MAX_NAME_CHARS - len(extensions[0])]}{extensions[0]}")


def content_type_for(name: str) -> str:
    """The type announced for a file that is not a verified image: from its name, never an inline image type."""
    guessed, encoding = _mime.guess_type(name, strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, OCTET_STREAM)
    if guessed is None or guessed in _INLINE_TYPES or len(guessed) > 100:
        # "photo.png" whose content is not a PNG is just bytes.
        return OCTET_STREAM
    return guessed


def verified_image(upload: UploadedFile) -> tuple[str, int, int] | None:
    """(Pillow format, width, height) if the upload is a PNG, JPEG, GIF or WebP that parses and verifies; else None.

    Only the header is decoded to learn the size; `verify()` then checks the
    file's structure (chunk checksums for PNG) without decoding the pixels.
    Pictures above MAX_IMAGE_PIXELS are not images here: decompression bombs
    stay plain downloads.
    """
    upload.seek(0)
    # No warnings.catch_warnings() here: it swaps process-wide state, which is
    # not safe with requests on several threads. The explicit pixel check runs
    # before verify() (which decodes nothing), so a picture Pillow would warn
    # about (over Image.MAX_IMAGE_PIXELS) is refused before anything else;
    # one over twice that raises DecompressionBombError from open() itself.
    try:
        with Image.open(upload, formats=list(IMAGE_TYPES)) as image:
            image_format = image.format
            width, height = image.size
            if image_format not in IMAGE_TYPES or width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
                return None
            image.verify()
    # Pillow reports a malformed file with whatever its parser hit (SyntaxError,
    # struct.error, OSError, ValueError, Image.DecompressionBombError...): any
    # of them means "not an image we serve inline".
    except Image.DecompressionBombError:
        return None
    except Exception:
        return None
    finally:
        upload.seek(0)
    return image_format, width, height


def attachment_create(*, room: Room, uploader: User, upload: UploadedFile) -> Attachment:
    """Store one upload for the uploader to attach to a message in `room`; returns it, unused.

    The uploader must be able to post in the room, with the codes of posting:
    NotFound (private room, not a member), Forbidden (banned), RoomLocked.
    Uploads count against their own budget of CHAT_RATE_LIMIT (RateLimited),
    separate from messages. Larger than CHAT_MAX_UPLOAD_BYTES: TooLarge, and
    nothing is stored.
    """
    room_check_readable(room=room, user=uploader)
    if room.is_locked:
        raise RoomLocked()
    size = upload.size
    if size is None:
        raise BadRequest("The upload has no size.")
    if size > settings.CHAT_MAX_UPLOAD_BYTES:
        raise TooLarge(f"Files are limited to {settings.CHAT_MAX_UPLOAD_BYTES} bytes (got {size}).")
    rate_limit_hit(user_id=uploader.pk, scope="upload")
    name = clean_filename(upload.name)
    image = verified_image(upload)
    attachment = Attachment(room=room, uploader=uploader, size=size)
    if image is not None:
        image_format, attachment.width, attachment.height = image
        attachment.is_image = True
        attachment.content_type = IMAGE_TYPES[image_format]
        attachment.name = _with_extension(name, image_format)
    else:
        attachment.content_type = content_type_for(name)
        attachment.name = name
    # The storage writes first (a random name from attachment_path); a row
    # that then fails to insert must not leave the file behind.
    attachment.file.save("upload", upload, save=False)
    try:
        with transaction.atomic():
            attachment.save()
    except BaseException:
        if attachment.file.name:
            _delete_file(attachment.file.storage, attachment.file.name)
        raise
    sweep_unused_uploads()
    return attachment


# The contract: uploads never used in a message are removed after a day,
# without cron. Each server process sweeps on a timer (messaging.fanout's hub
# loop, every CHAT_UPLOAD_SWEEP_INTERVAL) and, for a process that never had a
# websocket, when someone uploads (at most once per interval as well); the
# command (remove_unused_uploads) does the same from a scheduler. A sweep
# removes everything due, batch by batch, within SWEEP_MAX_BATCHES and
# SWEEP_TIME_BUDGET; what a budget leaves over goes on the next run.
UNUSED_UPLOAD_TTL = timedelta(days=1)
SWEEP_BATCH_SIZE = 500
SWEEP_MAX_BATCHES = 20
SWEEP_TIME_BUDGET = 10.0
_last_sweep: float | None = None
# One sweep at a time per process (requests run on several threads).
_sweeping = threading.Lock()


def sweep_unused_uploads(*, force: bool = False) -> int:
    """Remove day-old unused uploads, unless this process swept less than CHAT_UPLOAD_SWEEP_INTERVAL ago
    (`force`: regardless); returns how many. Never raises a database error: it is logged, the next sweep catches up.
    """
    global _last_sweep
    now = time.monotonic()
    if not force and _last_sweep is not None and now - _last_sweep < settings.CHAT_UPLOAD_SWEEP_INTERVAL:
        return 0
    if not _sweeping.acquire(blocking=False):
        return 0  # another thread of this process is at it
    try:
        _last_sweep = now
        return attachments_remove_unused(
            older_than=UNUSED_UPLOAD_TTL, max_batches=SWEEP_MAX_BATCHES, time_budget=SWEEP_TIME_BUDGET
        )
    except DatabaseError:
        logger.warning("sweeping unused uploads failed", exc_info=True)
        return 0
    finally:
        _sweeping.release()


def attachment_delete(*, attachment: Attachment) -> None:
    """Delete the row; its stored file goes once that commits (the post_delete handler below)."""
    with transaction.atomic():
        attachment.delete()


def attachments_remove_unused(
    *,
    older_than: timedelta,
    batch_size: int | None = None,
    max_batches: int | None = None,
    time_budget: float | None = None,
) -> int:
    """Delete uploads never attached to a message and older than `older_than`, their files too; returns how many.

    Works in batches of `batch_size` (default SWEEP_BATCH_SIZE), each its own
    transaction, until a batch comes back short (nothing more is due), or
    `max_batches` batches or `time_budget` seconds are spent (None: no limit).
    Rows are locked before they are deleted (skipping any a send is
    attaching right now), so an upload a message claims concurrently is
    either attached or gone, never attached and then deleted.
    """
    size = batch_size or SWEEP_BATCH_SIZE
    cutoff = timezone.now() - older_than
    started = time.monotonic()
    removed = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        if time_budget is not None and batches and time.monotonic() - started >= time_budget:
            break
        batches += 1
        with transaction.atomic():
            batch = list(
                Attachment.objects.select_for_update(skip_locked=True)
                .filter(message__isnull=True, created_at__lt=cutoff)
                .order_by("created_at", "pk")
                .values_list("pk", flat=True)[:size]
            )
            if batch:
                Attachment.objects.filter(pk__in=batch, message__isnull=True).delete()
        removed += len(batch)
        if len(batch) < size:
            break
    return removed


def _delete_file(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:
        # A file left behind costs disk space, not correctness; say so and go on.
        logger.warning("could not delete stored file %s", name, exc_info=True)


def _remove_file_after_delete(sender: type[Attachment], instance: Attachment, using: str, **kwargs: Any) -> None:
    """Every way a row goes (admin, cascade from a room, the cleanup command) takes its file along, after COMMIT."""
    name = instance.file.name
    if not name:
        return
    storage = instance.file.storage
    transaction.on_commit(lambda: _delete_file(storage, name), using=using)


def connect_signals() -> None:
    post_delete.connect(_remove_file_after_delete, sender=Attachment, dispatch_uid="attachment-file-removal")


# --- serving ------------------------------------------------------------------------------


def content_disposition(disposition: str, name: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name as `filename*` (RFC 5987)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\%' else "_" for ch in name) or FALLBACK_NAME
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@overload
def attachment_response(attachment: Attachment) -> FileResponse: ...
@overload
def attachment_response(attachment: Attachment, *, request: HttpRequest | None) -> HttpResponseBase: ...


def attachment_response(attachment: Attachment, *, request: HttpRequest | None = None) -> HttpResponseBase:
    """The stored file, streamed, with headers that stop it from ever running as a page.

    Inline only for verified images, with their verified type; everything
    else is an `application/octet-stream` download. `nosniff` stops a browser
    from guessing better, and the sandboxing CSP covers a file opened
    directly anyway. With `request` (a reader already checked), a matching
    If-None-Match / If-Modified-Since gets a 304 without opening the file.
    Raises NotFound when the storage no longer has the file.
    """
    etag = attachment_etag(attachment)
    last_modified = attachment.created_at.timestamp()
    if request is not None:
        not_modified = get_conditional_response(request, etag=etag, last_modified=int(last_modified))
        if not_modified is not None:
            _cache_headers(not_modified, etag, last_modified)
            return not_modified
    try:
        handle = attachment.file.open("rb")
    except (OSError, ValueError) as exc:
        logger.warning("attachment %s: stored file %s is missing", attachment.pk, attachment.file.name)
        raise NotFound("No such file.") from exc
    inline = attachment.is_image and attachment.content_type in _INLINE_TYPES
    response = FileResponse(handle, content_type=attachment.content_type if inline else OCTET_STREAM)
    response["Content-Disposition"] = content_disposition("inline" if inline else "attachment", attachment.name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    _cache_headers(response, etag, last_modified)
    return response


def _cache_headers(response: HttpResponseBase, etag: str, last_modified: float) -> None:
    # The viewer's own cache only, and it asks every time: who may read a
    # room changes (a ban) and a message's files go with it (a deletion), so
    # no copy may be shown without the server saying yes again. The
    # validators make that revalidation a 304 without the body.
    response["Cache-Control"] = "private, no-cache"
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified)


def attachment_etag(attachment: Attachment) -> str:
    """A strong validator: an attachment's stored bytes never change, so its id and stored name identify them."""
    digest = hashlib.sha256(f"{attachment.pk}:{attachment.file.name}:{attachment.size}".encode()).hexdigest()[:32]
    return f'"{digest}"'
