"""The server-rendered pages (room list, room, DM form).

A top-layer app beside `api`: pages show rooms together with their messages, so
they import both domain apps, which only this layer may do (the import-linter
contract in pyproject.toml keeps `rooms` from reaching up to `messaging`).
"""
