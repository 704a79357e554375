"""`@username` in a message body: finding the names, and choosing the users they mention.

Parsing is pure; the users come from one statement per batch
(`messaging.services._resolve_mentions`), which keeps only active users who
can read the room. Rules, as Slack and Zulip users expect:

- `@` starts a mention only where a word does not go on: `mail@bob.org` and
  `x@bob` mention nobody, `(@bob)`, `"@bob"`, `hi @bob, there` and `@bob:` do.
- A name is made of the characters usernames are (letters, digits, `_ . + -`);
  trailing `.`, `+` or `-` that are not part of an existing username are
  punctuation (`ping @bob.` mentions bob, `@bob.smith` mentions bob.smith).
- Case does not matter (`@Bob` mentions bob); if two usernames differ only in
  case, the one written exactly wins.
- The author is never mentioned; each user once, in order of first appearance.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Not after a character that could belong to a word or an address.
MENTION_RE = re.compile(r"(?<![\w.@+-])@([\w.+-]{1,150})")
TRAILING = ".+-"


@dataclass(frozen=True)
class MentionedUser:
    id: int
    username: str
    display_name: str

    def to_dict(self) -> dict[str, object]:
        """The contract's user object (as `accounts.serializers.user_to_dict`)."""
        return {"id": self.id, "username": self.username, "display_name": self.display_name or self.username}


def mention_tokens(body: str) -> list[str]:
    """The names after each `@`, in order, as written."""
    return [match.group(1) for match in MENTION_RE.finditer(body)]


def token_candidates(token: str) -> list[str]:
    """The usernames a token may stand for, longest first: `bob.` -> `bob.`, `bob`."""
    candidates = [token]
    while token and token[-1] in TRAILING:
        token = token[:-1]
        if token:
            candidates.append(token)
    return candidates


def lookup_names(body: str) -> set[str]:
    """Lower-cased names to look up for a body (every candidate of every token)."""
    return {candidate.lower() for token in mention_tokens(body) for candidate in token_candidates(token)}


def choose_mentions(
    body: str, *, author_id: int, users_by_name: Mapping[str, Iterable[MentionedUser]]
) -> list[MentionedUser]:
    """The users a body mentions, given the readable users found for each lower-cased name."""
    chosen: list[MentionedUser] = []
    seen: set[int] = set()
    for token in mention_tokens(body):
        for candidate in token_candidates(token):
            found = list(users_by_name.get(candidate.lower(), ()))
            if not found:
                continue
            exact = [user for user in found if user.username == candidate]
            user = exact[0] if exact else min(found, key=lambda u: u.id)
            if user.id != author_id and user.id not in seen:
                seen.add(user.id)
                chosen.append(user)
            break
    return chosen
