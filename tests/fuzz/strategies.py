"""Hypothesis strategies for websocket client frames: well-formed ones and broken ones.

A `Payload` is what goes on the wire (text or bytes) plus what the fuzzer
knows about it: the parsed frame when it is a JSON object, and whether it is
over the 64 KiB frame limit (the one input the contract closes a socket for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

MAX_FRAME = 64 * 1024


@dataclass(frozen=True)
class World:
    """The ids and slugs the fuzzed user meets: real objects, so frames reach past validation."""

    home: str  # a public room the socket keeps joined
    public: str  # another public room
    private: str  # a private room the user is not in
    dm: str  # a DM of two other people
    own_dm: str  # a DM the user is in
    home_ids: tuple[int, ...]  # messages in `home` (one deleted)
    other_ids: tuple[int, ...]  # messages elsewhere (another room, the private room)
    upload_ids: tuple[int, ...] = ()  # the user's unused uploads to `home` (each usable once)


@dataclass(frozen=True)
class Payload:
    data: str | bytes
    frame: Any = None  # the parsed JSON when it is an object (duplicate keys: the last wins, as json does)
    label: str = ""
    oversize: bool = field(default=False)

    def __repr__(self) -> str:
        # Hypothesis prints the failing example: 64 KiB of it helps nobody.
        return f"Payload({self.label}, {len(self.data)} long: {self.data[:300]!r})"


def _payload(data: str | bytes, label: str) -> Payload:
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    frame: Any = None
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        frame = parsed
    return Payload(data=data, frame=frame, label=label, oversize=size > MAX_FRAME)


# --- values ------------------------------------------------------------------

# Text of every kind hypothesis finds, plus what breaks naive code: NUL, RTL
# marks, combining marks, astral emoji, zero-width joiners, white space only.
EDGE_TEXT = [
    "",
    " ",
    "\n\t ",
    "\x00",
    "a\x00b",
    "\u202e\u202d",
    "e\u0301",
    "😀",
    "👨‍👩‍👧",
    "<b>x</b>",
    "<script>alert(1)</script>",
    "**bold** _em_ `code` [x](javascript:alert(1)) https://example.com",
    "@bob @alice @nobody hi",
    "> quote\n\n```\ncode\n```",
    "a" * 4000,
    " " * 50 + "a" * 4000 + " " * 50,
    "a" * 4001,
    "😀" * 4000,
    "😀" * 4001,
]
texts = st.one_of(st.text(max_size=80), st.sampled_from(EDGE_TEXT))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
refs = st.one_of(st.text(min_size=1, max_size=64), st.sampled_from(["r", "x" * 64, "😀" * 64]))
client_ids = st.one_of(st.text(min_size=1, max_size=64), st.sampled_from(["c", "x" * 64, "😀" * 64, " "]))
seqs = st.one_of(
    st.integers(min_value=0, max_value=50),
    st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
)


def slugs(world: World) -> st.SearchStrategy[str]:
    # Mostly real rooms, so frames get past the slug to what lies behind it.
    return st.one_of(
        st.just(world.home),
        st.just(world.home),
        st.sampled_from([world.public, world.private, world.dm, world.own_dm]),
        st.sampled_from(["nope", "Lobby", "-x", "a" * 50, "a" * 51, "lobby/../x"]),
        st.text(max_size=60),
    )


def message_ids(world: World) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(world.home_ids),
        st.sampled_from(world.other_ids),
        st.integers(min_value=1, max_value=10**6),
        st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
    )


EMOJI = ["👍", "👍🏽", "❤️", "❤", "🇫🇷", "👨‍👩‍👧", "a", ":)", "👍👍", "🏽", "", " ", "😀"]
emojis = st.one_of(st.sampled_from(EMOJI), st.text(max_size=4))


# --- well-formed frames ------------------------------------------------------


def _with_ref(frame: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(frame, st.none() | refs).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "ref": pair[1]}
    )


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def client_frames(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """Frames of the shapes in ClientFrame (/api/ws-schema/), with real and edge values."""
    room = slugs(world)
    home_or_any = st.one_of(st.just(world.home), room)

    def frame(kind: str, required: dict[str, Any], **optional: Any) -> st.SearchStrategy[dict[str, Any]]:
        base = st.fixed_dictionaries({"type": st.just(kind), **required}, optional=optional)
        return _with_ref(base)

    return st.one_of(
        frame("join", {"room": room}, after=seqs),
        frame("leave", {"room": room}),
        frame(
            "send",
            {"room": home_or_any, "body": texts, "client_id": client_ids},
            reply_to=st.none() | message_ids(world),
            attachments=st.lists(st.integers(min_value=1, max_value=10**6), max_size=11),
        ),
        frame("typing", {"room": home_or_any}),
        frame("read", {"room": home_or_any, "seq": seqs}),
        frame(
            "react",
            {"room": home_or_any, "message_id": message_ids(world), "emoji": emojis, "on": st.booleans()},
        ),
        frame("delete", {"room": home_or_any, "message_id": message_ids(world)}),
        frame("ping", {}),
        # Frames the server should accept, so acks, stored rows and events get their share.
        frame(
            "send",
            {
                "room": st.just(world.home),
                "body": st.one_of(st.text(min_size=1, max_size=200), st.sampled_from(EDGE_TEXT)),
                "client_id": client_ids,
            },
            reply_to=st.none() | st.sampled_from(world.home_ids),
            attachments=st.lists(st.sampled_from(world.upload_ids or (1,)), max_size=3, unique=True),
        ),
        frame(
            "react",
            {
                "room": st.just(world.home),
                "message_id": st.sampled_from(world.home_ids),
                "emoji": st.sampled_from(EMOJI[:6]),
                "on": st.booleans(),
            },
        ),
    )


def well_formed(world: World) -> st.SearchStrategy[Payload]:
    return client_frames(world).map(lambda f: _payload(json.dumps(f, ensure_ascii=False), f"frame:{f['type']}"))


# --- broken frames -----------------------------------------------------------


def _mutate(frame: dict[str, Any], key: str, value: Any, drop: bool) -> dict[str, Any]:
    changed = dict(frame)
    if drop:
        changed.pop(key, None)
    else:
        changed[key] = value
    return changed


def broken(world: World) -> st.SearchStrategy[Payload]:
    good = client_frames(world)
    wrong_field = st.builds(
        lambda f, i, v, drop: _mutate(f, sorted(f)[i % len(f)], v, drop),
        good,
        st.integers(min_value=0, max_value=10),
        json_values,
        st.booleans(),
    ).map(lambda f: _payload(json.dumps(f), "broken:wrong-or-missing-field"))
    unknown_type = st.builds(
        lambda t, rest: {**rest, "type": t}, json_values, st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    ).map(lambda f: _payload(json.dumps(f), "broken:unknown-type"))
    extra_members = st.builds(
        lambda f, extra: {**extra, **f}, good, st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    ).map(lambda f: _payload(json.dumps(f), "broken:extra-members"))
    not_object = json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: _payload(json.dumps(v), "broken:not-an-object")
    )
    not_json = st.text(max_size=60).map(lambda t: _payload(t, "broken:not-json"))
    binary = st.one_of(
        st.binary(max_size=60),
        good.map(lambda f: json.dumps(f).encode()),
    ).map(lambda b: _payload(b, "broken:binary-frame"))
    h = world.home
    raw = st.sampled_from(
        [
            f'{{"type":"read","room":"{h}","seq":NaN}}',
            f'{{"type":"read","room":"{h}","seq":Infinity}}',
            f'{{"type":"join","room":"{h}","after":-Infinity}}',
            f'{{"type":"react","room":"{h}","message_id":1e400,"emoji":"👍","on":true}}',
            f'{{"type":"send","room":"{h}","body":"x","client_id":"c","reply_to":1.0}}',
            f'{{"type":"read","room":"{h}","seq":1{"0" * 5000}}}',
            f'{{"type":"send","room":"{h}","body":"x","client_id":"c","reply_to":{10**40}}}',
            '{"type":"ping","type":"pong"}',
            f'{{"type":"send","room":"nope","room":"{h}","body":"dup","client_id":"dup-keys"}}',
            '{"type":"ping","ref":"a","ref":""}',
            "[" * 10000 + "]" * 10000,
            '{"type":"ping","ref":' + "[" * 5000 + "]" * 5000 + "}",
            '{"a":' * 3000 + "1" + "}" * 3000,
            f'{{"type":"send","room":"{h}","body":"\\ud800","client_id":"lone-surrogate"}}',
            f'{{"type":"send","room":"{h}","body":"ok","client_id":"\\udfff"}}',
            '{"type":"join","room":"\\ud800"}',
            '{"type":"ping","ref":"\\ud83d"}',
            f'{{"type":"react","room":"{h}","message_id":1,"emoji":"\\ud83d","on":true}}',
            "\ufeff{}",
            "",
            "null",
            '"ping"',
            "{}",
            '{"type":null}',
            '{"type":["ping"]}',
            '{"type":"ping"',
        ]
    ).map(lambda t: _payload(t, "broken:raw"))
    huge = st.sampled_from([MAX_FRAME - 200, MAX_FRAME + 1, MAX_FRAME * 2]).map(
        lambda n: _payload(json.dumps({"type": "send", "room": h, "body": "a" * n, "client_id": "big"}), "broken:size")
    )
    return st.one_of(wrong_field, unknown_type, extra_members, not_object, not_json, binary, raw, huge)


def payloads(world: World) -> st.SearchStrategy[Payload]:
    return st.one_of(well_formed(world), well_formed(world), broken(world))
