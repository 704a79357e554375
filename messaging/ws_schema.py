"""The websocket frame schema (JSON Schema, draft 2020-12), served at `/api/ws-schema/`.

`ws_schema.json` next to this file is the one description of every frame of
`/ws/chat/`; the test suite validates every frame the server sends against it
(tests/wsschema.py), so it cannot drift from the consumer and the fan-out.
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("ws_schema.json")


@cache
def ws_schema_text() -> str:
    """The schema document as checked in (served byte for byte)."""
    return SCHEMA_PATH.read_text(encoding="utf-8")


def ws_schema() -> dict[str, Any]:
    """The schema document, parsed (a fresh copy: callers may change it)."""
    data: dict[str, Any] = json.loads(ws_schema_text())
    return data
