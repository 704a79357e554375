"""A message body as safe HTML: CommonMark, mentions as links, then an allow-list sanitizer.

`render_markdown` is what `Message.html` holds (docs/protocol.md, "Markdown"):
computed once on every write (messaging.services), never on read, so history
pages and broadcasts cost nothing extra. It is a pure function of the body and
the usernames it mentions; the data migration 0006 calls it too, so changing
what it produces means rendering history again in a new migration.

Two layers, each enough on its own for the usual attacks:

1. markdown-it-py with raw HTML off: the sender's `<b>` is text (`&lt;b&gt;`),
   and a link is made only for an absolute http, https or mailto URL
   (`validate_link`), so `javascript:`, `data:`, relative and
   protocol-relative URLs stay plain text. Headings, rules and images are not
   rules of this renderer: a chat line starting with `#` stays a line, and
   `![x](url)` is the text "!" and a link, never an <img> that would load
   something when the message is merely shown.
2. nh3 (ammonia) cleans the result against ALLOWED_TAGS / ALLOWED_ATTRIBUTES /
   URL_SCHEMES, adds `rel`, and drops comments; whatever a parser bug could
   let through the first layer stops here.
"""

import re
from collections.abc import Collection
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from .mentions import MENTION_RE, token_candidates

# The contract's list and nothing else: paragraphs and line breaks, emphasis,
# strong, inline and fenced code, block quotes, lists, links.
ALLOWED_TAGS = frozenset({"p", "br", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a"})
# The contract: links carry href and rel (added by nh3), and "no other tag or
# attribute appears". So no `class` on mentions (a mention is known by its
# href, MENTION_HREF) and no `start` on lists ("3. third" is numbered from 1).
ALLOWED_ATTRIBUTES = {"a": frozenset({"href"})}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener noreferrer"

# A mention links to the user's page in the web app (web.views.user_detail).
MENTION_HREF = "/u/{}/"
_MENTION_HREF_RE = re.compile(r"/u/[^/?#\s]+/\Z")
_SCHEME_RE = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)


def validate_link(url: str) -> bool:
    """markdown-it's link check: only absolute http, https and mailto URLs become links.

    markdown-it has already decoded entities and backslash escapes and
    percent-encoded the URL when it asks, so `&#106;avascript:` and
    `java%09script:` arrive as what a browser would see.
    """
    match = _SCHEME_RE.match(url)
    if match is None or match.group(1).lower() not in URL_SCHEMES:
        return False
    # "http:foo" or "http:/x" are relative in a browser: insist on the authority.
    return match.group(1).lower() == "mailto" or url[match.end() : match.end() + 2] == "//"


def _href_filter(tag: str, attribute: str, value: str) -> str | None:
    """nh3's last word on every kept attribute: an href is absolute (scheme checked by nh3) or a mention path."""
    if tag == "a" and attribute == "href":
        if _MENTION_HREF_RE.match(value) or validate_link(value):
            return value
        return None
    return value


_md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True, "typographer": False})
# Slack and Zulip keep a line starting with "#" or "---" as written; images would
# load a URL just by being shown. "linkify" turns bare URLs into links.
_md.disable(["heading", "lheading", "hr", "image"])
_md.enable("linkify")
_md.validateLink = validate_link  # type: ignore[method-assign]

_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    # "*": nothing generic (nh3 would otherwise keep `title` and `lang` anywhere).
    attributes={"*": set(), **{tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()}},
    url_schemes=set(URL_SCHEMES),
    link_rel=LINK_REL,
    strip_comments=True,
    clean_content_tags={"script", "style"},
    attribute_filter=_href_filter,
)


def _mention_target(name: str, usernames: dict[str, list[str]]) -> tuple[str, str] | None:
    """(the text linked, the username) for the name after an `@`, as messaging.mentions reads it."""
    for candidate in token_candidates(name):
        found = usernames.get(candidate.lower())
        if found:
            return candidate, candidate if candidate in found else found[0]
    return None


def _link_mentions(children: list[Token], usernames: dict[str, list[str]]) -> list[Token]:
    """Split the text tokens of one inline run so each mention is a link; text inside links is left alone."""
    out: list[Token] = []
    depth = 0
    for token in children:
        if token.type == "link_open":
            depth += 1
        elif token.type == "link_close":
            depth -= 1
        if token.type != "text" or depth or "@" not in token.content:
            out.append(token)
            continue
        text, start = token.content, 0
        for match in MENTION_RE.finditer(text):
            target = _mention_target(match.group(1), usernames)
            if target is None:
                continue
            written, username = target
            end = match.start(1) + len(written)
            if match.start() > start:
                out.append(_text(text[start : match.start()]))
            link = Token("link_open", "a", 1)
            link.attrs = {"href": MENTION_HREF.format(quote(username, safe=""))}
            out += [link, _text(text[match.start() : end]), Token("link_close", "a", -1)]
            start = end
        if start:
            if start < len(text):
                out.append(_text(text[start:]))
        else:
            out.append(token)
    return out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def render_markdown(body: str, mentions: Collection[str] = ()) -> str:
    """`body` as sanitized HTML; each `@name` standing for one of `mentions` (usernames) becomes a link.

    `mentions` are the users the message mentions (messaging.mentions, as
    resolved against the database); any other `@name` stays text. Mentions in
    code or inside a link's text stay text too. Deterministic and free of I/O.
    """
    tokens = _md.parse(body)
    if mentions:
        usernames: dict[str, list[str]] = {}
        for username in mentions:
            usernames.setdefault(username.lower(), []).append(username)
        for token in tokens:
            if token.type == "inline" and token.children:
                token.children = _link_mentions(token.children, usernames)
    # Without the renderer's final newline: the value is a fragment to put in an element.
    return _cleaner.clean(_md.renderer.render(tokens, _md.options, {})).rstrip("\n")
