"""Uploading and downloading attachments (docs/api.md, "Attachments").

Thin like the rest of the API: parse the multipart body, call
`messaging.attachments.attachment_create`, answer the attachment's dict;
a download checks who may read it (`attachment_get_readable`) and streams
the stored file with the headers of `attachment_response`.
"""

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions as drf
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import BadRequest
from messaging.attachments import attachment_create, attachment_response
from messaging.selectors import attachment_get_readable
from messaging.serializers import attachment_to_dict
from rooms.selectors import room_get

from . import serializers as s
from .pagination import MAX_BIGINT
from .views import errors, viewer

UPLOAD_REQUEST = inline_serializer(
    "AttachmentUpload",
    fields={"file": serializers.FileField(help_text="The file: one part named `file`.")},
)


class AttachmentUploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": UPLOAD_REQUEST},
        responses={201: s.AttachmentSerializer, **errors(400, 401, 403, 404, 409, 413, 429)},
        summary="Upload a file to attach to your next message in the room",
        description=(
            f"Multipart, one file in the field `file`, at most CHAT_MAX_UPLOAD_BYTES "
            f"(this server: {settings.CHAT_MAX_UPLOAD_BYTES} bytes; larger is 413 `too_large`). You must be able to "
            "post in the room: a private room you are not in is 404, a ban 403, a locked room 409. The upload "
            "stays yours and unused until a message lists its id in `attachments` (send or POST messages); "
            "unused uploads are removed after a day. PNG, JPEG, GIF and WebP files whose content checks out "
            "get that `content_type` and are shown inline; anything else is a download."
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        room = room_get(slug=slug)
        try:
            files = request.FILES.getlist("file")
        except drf.UnsupportedMediaType as exc:
            raise BadRequest("Send the file as multipart/form-data, in a field named `file`.") from exc
        except SuspiciousOperation as exc:
            # Django's own caps on a form (DATA_UPLOAD_MAX_NUMBER_FILES and friends): bad input, not a page.
            raise BadRequest(f"The form was refused: {exc}") from exc
        if not files and "file" in request.POST:
            raise BadRequest("`file` must be a file part (with a filename), not a plain form field.")
        if not files:
            raise BadRequest("No file: send one as a multipart part named `file`, with a filename.")
        if len(files) > 1:
            raise BadRequest(f"Send exactly one file, in a field named `file` (got {len(files)}).")
        attachment = attachment_create(room=room, uploader=user, upload=files[0])
        return Response(attachment_to_dict(attachment), status=status.HTTP_201_CREATED)


class AttachmentDownloadView(APIView):
    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                description="The file. Verified images inline with their type; everything else as a download."
            ),
            304: OpenApiResponse(description="Not modified: the `ETag` sent in `If-None-Match` still matches."),
            **errors(401, 404),
        },
        summary="Download an attachment (the `url` of an attachment)",
        description=(
            "For anyone who can read the room (an unused upload: its uploader only); anyone else gets 404. "
            "Always `X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy; `Content-Disposition` "
            "is `inline` only for PNG, JPEG, GIF and WebP files whose content was verified, else `attachment` "
            "(with `application/octet-stream`). `Cache-Control: private, no-cache` with an `ETag` and `Last-Modified`: "
            "a browser asks again each time (a ban or a deleted message ends access at once) and a matching "
            "`If-None-Match` gets 304. The name in the path is for people; the id finds the file."
        ),
    )
    def get(self, request: Request, attachment_id: int, name: str) -> HttpResponseBase:
        user = viewer(request)
        if attachment_id > MAX_BIGINT:
            raise drf.NotFound("No such file.")
        # Readable first: a 304 is an answer too, and only a reader gets one.
        attachment = attachment_get_readable(attachment_id=attachment_id, user=user)
        return attachment_response(attachment, request=request._request)
