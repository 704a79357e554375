"""messaging.markdown: what a message's `html` may contain, whatever the body (a pure function, no database)."""

import re
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.markdown import ALLOWED_TAGS, LINK_REL, render_markdown

MAX_BODY = 4000
VOID = {"br"}


class Checked(HTMLParser):
    """Parses `html` as a browser's tokenizer would and records everything that is not allowed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.problems.append(f"repeated attribute on <{tag}>: {names}")
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name}={value!r}")
            allowed = {"a": {"href", "rel"}}.get(tag, set())
            if name not in allowed:
                self.problems.append(f"attribute {name} on <{tag}>")
        if tag == "a":
            self.links.append(values)
            self._check_link(values)
        if tag not in VOID:
            self.stack.append(tag)

    def _check_link(self, values: dict[str, str | None]) -> None:
        href, rel = values.get("href"), values.get("rel")
        if rel != LINK_REL:
            self.problems.append(f"rel={rel!r}")
        if href is None:
            return
        if href.startswith("/"):
            # Only a mention links within the site, to exactly the person's page.
            if not re.fullmatch(r"/u/[^/?#\s\"'<>]+/", href):
                self.problems.append(f"relative href {href!r}")
            return
        parts = urlsplit(href)
        if parts.scheme not in {"http", "https", "mailto"}:
            self.problems.append(f"href {href!r}")
        elif parts.scheme != "mailto" and not parts.netloc:
            self.problems.append(f"href without a host {href!r}")
        if any(ord(char) < 0x20 or char.isspace() for char in href):
            self.problems.append(f"space or control character in href {href!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"declaration {data!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")


def check(html: str) -> Checked:
    """Assert that `html` holds nothing outside the allow-list; return what was parsed."""
    parser = Checked()
    parser.feed(html)
    parser.close()
    if parser.stack:
        parser.problems.append(f"unclosed {parser.stack}")
    assert not parser.problems, (parser.problems, html)
    # Belt and braces: whatever the parser made of it, none of these is in the text as markup.
    lowered = html.lower()
    for needle in ("<script", "<style", "<img", "<svg", "<iframe", "<form", "<math", "<input", "<!--"):
        assert needle not in lowered, (needle, html)
    return parser


def deep_list(depth: int) -> str:
    """Each item indented under the one before (depth 60 is ~4000 characters)."""
    return "\n".join("  " * level + "- item" for level in range(depth))


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<a href=# onclick=alert(1)>x</a>",
    '<a href="&#x6A;avascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript&#58;alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](<java script:alert(1)>)",
    "[x]( javascript:alert(1) )",
    "[x](java\u200bscript:alert(1))",
    "[x](" + "".join(chr(0xFEE0 + ord(c)) for c in "javascript") + ":alert(1))",  # fullwidth letters
    "[x](\\javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](DATA:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    "[x](//evil.example/phish)",
    "[x](/admin/)",
    "[x](http:evil.example)",
    "<javascript:alert(1)>",
    "<JAVASCRIPT:alert(1)>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,<script>alert(1)</script>>",
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    '[x][ref]\n\n[ref]: <data:text/html,<script>alert(1)</script>> "t"',
    "[x]\n\n[x]: vbscript:msgbox(1)",
    "![x](javascript:alert(1))",
    "![x](http://evil.example/track.png)",
    '![x](http://evil.example/a.png "t" onerror="alert(1)")',
    "![x][img]\n\n[img]: http://evil.example/track.png",
    '[x](http://example.com" onmouseover="alert(1))',
    '[x](http://example.com "title\\" onmouseover=\\"alert(1)")',
    '[x](https://example.com/"><script>alert(1)</script>)',
    "<div><p>nested <b>bold <i>italic</div></b>",
    "<b>unclosed <i>tags <a href='http://x.example'>",
    "</p></blockquote></ul>closing first",
    "<<script>script>alert(1)<</script>/script>",
    "<scr<script>ipt>alert(1)</script>",
    "<!-- a comment --> <!--[if IE]><script>alert(1)</script><![endif]-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml version='1.0'?><x/>",
    "<!DOCTYPE html><html><head></head></html>",
    "<style>body{display:none}</style>",
    "<p style='position:fixed;inset:0'>cover</p>",
    "<iframe src=//evil.example></iframe>",
    "<form action=//evil.example><input name=password><button>Log in</button></form>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<object data=x.swf></object><embed src=x.swf>",
    "<meta http-equiv=refresh content='0;url=//evil.example'>",
    "<base href=//evil.example/>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    '```js" onclick="alert(1)\ncode\n```',
    "```\n</code></pre><script>alert(1)</script>\n```",
    "    <script>alert(1)</script> (indented code)",
    "http://example.com/<script>alert(1)</script>",
    'www.example.com/"onmouseover="alert(1)',
    "mailto:x@example.com?subject=<script>alert(1)</script>",
    "bob@example.com<script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "&#x3C;img src=x onerror=alert(1)&#x3E;",
    "[@bob](javascript:alert(1))",
    '@bob"><script>alert(1)</script>',
    "@bob<img src=x onerror=alert(1)>",
    "**@bob** _@bob_ `@bob` [@bob](http://x.example) @bob.",
    "\u202e<script>alert(1)</script>\u202c",
    "\ufeff<scr\u200bipt>alert(1)</script>",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",  # fullwidth < and >
    "1. a\n999999999999. too big\n-1. negative",
    "123456789. start",
    ">" * 1000 + " deep quote",
    "> " * 1000 + "deep spaced quote",
    deep_list(60),
    "- " * (MAX_BODY // 2 - 1) + "x",
    "1. " * (MAX_BODY // 3 - 1) + "x",
    "`" * MAX_BODY,
    "*" * MAX_BODY,
    "_" * MAX_BODY,
    "[" * (MAX_BODY // 2) + "]" * (MAX_BODY // 2),
    "[x](" * (MAX_BODY // 4),
    "![" * (MAX_BODY // 2),
    "<" * MAX_BODY,
    "&#" * (MAX_BODY // 2),
    "**a** <b>x</b> [l](javascript:1) <img src=x onerror=1> " * (MAX_BODY // 55),
    ("a" * 200 + "\n") * (MAX_BODY // 201),
    "http://" + "a." * (MAX_BODY // 2 - 10) + "com",
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("mentions", [(), ("bob",)], ids=["plain", "mentions"])
def test_hostile_bodies_render_to_allowed_html_only(body, mentions):
    assert len(body) <= MAX_BODY
    check(render_markdown(body, mentions))


def test_the_corpus_is_large_enough():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<b>x</b>",
        "<a href=javascript:alert(1)>x</a>",
        "<!-- hidden -->",
    ],
)
def test_raw_html_is_escaped_and_shown_as_text(body):
    html = render_markdown(body)
    parser = check(html)
    assert parser.tags == ["p"]
    assert "".join(parser.text) == body


@pytest.mark.parametrize(
    "body",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html,hi)",
        "[x](vbscript:x)",
        "[x](//evil.example)",
        "[x](/relative)",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
    ],
)
def test_links_elsewhere_than_http_https_mailto_are_not_links(body):
    assert "<a" not in render_markdown(body)


@pytest.mark.parametrize(
    "body",
    ["![x](http://evil.example/t.png)", "![x](javascript:alert(1))", "![x][i]\n\n[i]: http://evil.example/t.png"],
)
def test_images_are_never_img(body):
    assert "<img" not in render_markdown(body)


# --- what Markdown does ------------------------------------------------------------------

A = 'rel="nofollow noopener noreferrer"'


@pytest.mark.parametrize(
    ("body", "html"),
    [
        ("*it* _it_ **b** __b__", "<p><em>it</em> <em>it</em> <strong>b</strong> <strong>b</strong></p>"),
        ("use `x < y` here", "<p>use <code>x &lt; y</code> here</p>"),
        ("```py\nif a < b:\n    pass\n```", "<pre><code>if a &lt; b:\n    pass\n</code></pre>"),
        ("> quoted\n> still", "<blockquote>\n<p>quoted<br>\nstill</p>\n</blockquote>"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
        ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
        ("3. three\n4. four", "<ol>\n<li>three</li>\n<li>four</li>\n</ol>"),
        ("[docs](https://example.com/a?b=1&c=2)", f'<p><a href="https://example.com/a?b=1&amp;c=2" {A}>docs</a></p>'),
        ("see https://example.com.", f'<p>see <a href="https://example.com" {A}>https://example.com</a>.</p>'),
        ("www.example.com", f'<p><a href="http://www.example.com" {A}>www.example.com</a></p>'),
        ("mail me@example.com", f'<p>mail <a href="mailto:me@example.com" {A}>me@example.com</a></p>'),
        ("<https://example.com>", f'<p><a href="https://example.com" {A}>https://example.com</a></p>'),
        ("line one\nline two", "<p>line one<br>\nline two</p>"),
        ("para one\n\npara two", "<p>para one</p>\n<p>para two</p>"),
        ("# not a heading\n---", "<p># not a heading<br>\n---</p>"),
        ("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"),
        ("\\*not emphasis\\*", "<p>*not emphasis*</p>"),
    ],
)
def test_markdown(body, html):
    assert render_markdown(body) == html
    check(html)


def test_mentions_become_links_to_the_user():
    html = render_markdown("hi @bob, @Carol. and @nobody", ["bob", "Carol"])
    assert html == (f'<p>hi <a href="/u/bob/" {A}>@bob</a>, <a href="/u/Carol/" {A}>@Carol</a>. and @nobody</p>')


@pytest.mark.parametrize(
    ("body", "html"),
    [
        # Written in another case: the link goes to the user as they are named.
        ("@BOB", f'<p><a href="/u/bob/" {A}>@BOB</a></p>'),
        # A trailing dot is punctuation unless a username has it (messaging.mentions).
        ("ping @bob.", f'<p>ping <a href="/u/bob/" {A}>@bob</a>.</p>'),
        ("**@bob**", f'<p><strong><a href="/u/bob/" {A}>@bob</a></strong></p>'),
        # Not where messaging.mentions sees no mention, nor in code or in another link.
        ("mail@bob.org", f'<p><a href="mailto:mail@bob.org" {A}>mail@bob.org</a></p>'),
        ("x@bob", "<p>x@bob</p>"),
        ("`@bob`", "<p><code>@bob</code></p>"),
        ("[@bob](https://example.com)", f'<p><a href="https://example.com" {A}>@bob</a></p>'),
    ],
)
def test_mention_links_follow_the_mention_rules(body, html):
    assert render_markdown(body, ["bob"]) == html


def test_a_dotted_username_links_whole():
    assert render_markdown("@bob.smith and @bob", ["bob.smith", "bob"]) == (
        f'<p><a href="/u/bob.smith/" {A}>@bob.smith</a> and <a href="/u/bob/" {A}>@bob</a></p>'
    )


def test_a_username_is_percent_encoded_in_the_link():
    html = render_markdown("@zoë+test", ["zoë+test"])
    assert 'href="/u/zo%C3%AB%2Btest/"' in html
    check(html)


def test_without_mentions_no_name_is_a_link():
    assert render_markdown("hi @bob") == "<p>hi @bob</p>"


# --- cost -------------------------------------------------------------------------------

PATHOLOGICAL = [
    ">" * MAX_BODY,
    deep_list(60),
    "- " * (MAX_BODY // 2 - 1) + "x",
    "> - " * (MAX_BODY // 4 - 1) + "x",
    "`" * MAX_BODY,
    "*a" * (MAX_BODY // 2),
    "_a" * (MAX_BODY // 2),
    "[" * MAX_BODY,
    "[a](" * (MAX_BODY // 4),
    "<" * MAX_BODY,
    "**_`[<" * (MAX_BODY // 6),
    "@bob " * (MAX_BODY // 5),
    "www.a.co " * (MAX_BODY // 9),
    "a\n" * (MAX_BODY // 2),
]


@pytest.mark.parametrize("body", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_a_pathological_body_renders_quickly(body):
    """A safety net against catastrophic backtracking, not a benchmark (typically a few ms)."""
    assert len(body) <= MAX_BODY
    start = time.perf_counter()
    html = render_markdown(body, ["bob"])
    assert time.perf_counter() - start < 1.0
    check(html)


# --- anything at all ---------------------------------------------------------------------

MARKUP = st.sampled_from(
    [
        "<", ">", "&", '"', "'", "`", "*", "_", "[", "]", "(", ")", "!", "#", "-", "\n", " ", ":", "/", "\\",
        "@bob", "javascript:", "data:", "http://x.example", "mailto:", "&#106;", "<script>", "<img src=x onerror=a>",
        "on", "=", "<a href=", "</", "-->", "<!--", "```", "> ", "1. ", "- ", "www.", ".com", "\u200b", "\t",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(MARKUP, st.text(max_size=3)), max_size=60).map("".join))
def test_any_mix_of_markup_renders_to_allowed_html_only(body):
    check(render_markdown(body, ["bob"]))


@pytest.mark.parametrize(
    "html",
    [
        "<img src=x>",
        "<p onclick=x>a</p>",
        '<p title="t">a</p>',
        f'<a href="javascript:alert(1)" {A}>x</a>',
        f'<a href="//evil.example" {A}>x</a>',
        f'<a href="/admin/" {A}>x</a>',
        '<a href="https://example.com">no rel</a>',
        f'<a href="https://example.com" class="evil" {A}>x</a>',
        f'<a href="/u/bob/x" {A}>x</a>',
        '<ol start="1 onclick=x"><li>x</li></ol>',
        "<p><em>unbalanced</p></em>",
        "<p>unclosed",
        "<!-- c -->",
        "<style>p{}</style>",
    ],
)
def test_the_checker_catches_what_is_not_allowed(html):
    """The corpus is only as good as this check: it must fail on each of these."""
    with pytest.raises(AssertionError):
        check(html)
