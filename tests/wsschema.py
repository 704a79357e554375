"""Validation of websocket frames against the published schema (`GET /api/ws-schema/`).

Every place the tests read a server frame goes through `check_server_frame`, so
a frame the schema does not describe (a new field, a missing one, a wrong type)
fails the test that saw it, with the frame and the schema's complaint.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from messaging.ws_schema import ws_schema

# RFC 3339 date-time: jsonschema checks it only with an optional package, so here it is.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

format_checker = FormatChecker()


@format_checker.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@format_checker.checks("uri-reference", raises=ValueError)
def _uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    urlsplit(value)
    return not any(ch.isspace() for ch in value)


class FrameSchemaError(AssertionError):
    """A frame that does not match the published frame schema."""


@cache
def validator(definition: str) -> Draft202012Validator:
    """A validator for `#/$defs/<definition>` (e.g. ServerFrame, ClientFrame, Message)."""
    schema = ws_schema()
    root = {**schema, "$ref": f"#/$defs/{definition}"}
    root.pop("anyOf", None)
    return Draft202012Validator(root, format_checker=format_checker)


def check_frame(frame: Any, definition: str) -> None:
    v = validator(definition)
    errors = list(v.iter_errors(frame))
    if not errors:
        return
    # oneOf over frames discriminated by `type`: report against the frame's own definition.
    kind = frame.get("type") if isinstance(frame, dict) else None
    detail = best_match(errors)
    if isinstance(kind, str):
        for candidate in v.schema["$defs"][definition].get("oneOf", []):
            name = candidate["$ref"].rsplit("/", 1)[1]
            const = v.schema["$defs"][name]["properties"]["type"].get("const")
            if const == kind:
                own = list(validator(name).iter_errors(frame))
                if own:
                    detail = best_match(own)
                break
        else:
            raise FrameSchemaError(f"frame type {kind!r} is not in the {definition} schema: {frame!r}")
    where = "/".join(str(p) for p in detail.absolute_path) or "(frame)"
    raise FrameSchemaError(f"{definition} schema violation at {where}: {detail.message}\nframe: {frame!r}")


def check_server_frame(frame: Any) -> Any:
    """Fail unless `frame` (a dict, or the frame's text) is a ServerFrame; returns the parsed frame."""
    if isinstance(frame, str | bytes):
        frame = json.loads(frame)
    check_frame(frame, "ServerFrame")
    return frame


def check_client_frame(frame: Any) -> Any:
    if isinstance(frame, str | bytes):
        frame = json.loads(frame)
    check_frame(frame, "ClientFrame")
    return frame
