"""`GET /api/ws-schema/`: the websocket frame schema, for anyone (no login), like the OpenAPI schema."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from messaging.ws_schema import ws_schema_text


class WsSchemaView(APIView):
    """The JSON Schema (draft 2020-12) of every `/ws/chat/` frame, as checked in."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="A JSON Schema document (draft 2020-12): `$defs` holds one definition per frame; "
                "`ClientFrame` and `ServerFrame` are the unions of what each side sends, discriminated by `type`.",
            )
        },
        auth=[],
        summary="Websocket frame schema",
        tags=["websocket"],
    )
    def get(self, request: Request) -> HttpResponse:
        # Served byte for byte as checked in; plain application/json so every
        # client and browser reads it as JSON.
        response = HttpResponse(ws_schema_text(), content_type="application/json")
        response["Cache-Control"] = "public, max-age=300"
        return response
