"""Tweet normalization that keeps the emotional signal (mentions, URLs, hashtags, emoji, emoticons).

Two flavours share one set of rules: ``normalize_text`` for n-gram models (hashtags stay ``#word``, emoji and
emoticons stay as their own tokens) and ``normalize_for_embedding`` for MiniLM, whose uncased WordPiece vocabulary
maps most emoji to ``[UNK]``; there emoji and emoticons are spelled out as words so the signal survives.
"""
from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

#: Longest text we look at. Longer texts are truncated (documented handling for e.g. a 1 MB paste): MiniLM reads
#: at most 256 word pieces and n-gram features of a tweet-sized model gain nothing from megabytes of text.
MAX_CHARS = 10_000

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w{1,30}")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")
_SPACES = re.compile(r"\s+")
_ELONGATED = re.compile(r"(\w)\1{3,}")  # "soooooo" -> "sooo" (keeps that it was stretched)

#: Emoticons -> a word for the embedding model. Order matters (longer first) only within the regex alternation.
EMOTICONS: dict[str, str] = {
    ":-)": "smile", ":)": "smile", "(:": "smile", ":]": "smile", "=)": "smile", ":-]": "smile", "^_^": "smile",
    "^^": "smile", ":-d": "laugh", ":d": "laugh", "xd": "laugh", "=d": "laugh", "8d": "laugh",
    ";-)": "wink", ";)": "wink", ";d": "wink",
    ":-(": "frown", ":(": "frown", "):": "frown", ":[": "frown", "=(": "frown", "=[": "frown", ":-[": "frown",
    ":'(": "crying", ":,(": "crying", "t_t": "crying", ";_;": "crying",
    ":-p": "playful", ":p": "playful", "=p": "playful",
    ":-o": "surprised", ":o": "surprised", "o_o": "surprised", "o.o": "surprised",
    ":-/": "unsure", ":/": "unsure", ":\\": "unsure", ":-|": "neutral face", ":|": "neutral face",
    "<3": "love", "</3": "heartbroken", ":*": "kiss", ":-*": "kiss", ">:(": "angry", ">:-(": "angry",
}
_EMOTICON = re.compile(
    r"(?<!\S)(" + "|".join(re.escape(e) for e in sorted(EMOTICONS, key=len, reverse=True)) + r")(?!\S)",
    re.IGNORECASE,
)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or 0x2300 <= cp <= 0x23FF
            or 0x2B00 <= cp <= 0x2BFF or cp in (0x2764, 0x263A, 0x2639))


@lru_cache(maxsize=4096)
def emoji_name(ch: str) -> str:
    """'😂' -> 'face with tears of joy' (Unicode name, lower case; '' for modifiers and joiners)."""
    name = unicodedata.name(ch, "")
    if not name or name.startswith(("EMOJI MODIFIER", "VARIATION SELECTOR", "ZERO WIDTH")):
        return ""
    return name.lower()


def _base(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
    text = html.unescape(text)  # CrowdFlower carries &amp; &quot; ...
    text = _URL.sub(" http ", text)  # TweetEval's own convention for links
    text = _MENTION.sub(" @user ", text)
    return text


def normalize_text(text: str) -> str:
    """Normalization for n-gram models: lower case, ``@user``, ``http``, hashtags kept, emoji spaced out."""
    text = _base(text).lower()
    text = "".join(f" {c} " if _is_emoji(c) else c for c in text if c not in "\ufe0f\u200d")
    text = _ELONGATED.sub(r"\1\1\1", text)
    return _SPACES.sub(" ", text).strip()


def normalize_for_embedding(text: str) -> str:
    """Normalization for MiniLM: hashtags become words, emoji and emoticons are spelled out."""
    text = _base(text)
    text = _EMOTICON.sub(lambda m: f" {EMOTICONS[m.group(1).lower()]} ", text)
    text = _HASHTAG.sub(lambda m: " " + m.group(1).replace("_", " "), text)
    out = []
    for c in text:
        if _is_emoji(c) or (unicodedata.category(c) == "So" and ord(c) > 0x2000):
            name = emoji_name(c)
            out.append(f" {name} " if name else " ")
        elif c not in "\ufe0f\u200d":
            out.append(c)
    text = _ELONGATED.sub(r"\1\1\1", "".join(out))
    return _SPACES.sub(" ", text).strip()


def check_text(text: object, where: str = "text") -> str:
    """Reject what no model can classify with a clear message (``ValueError``; ``TypeError`` for non-strings)."""
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{where}: text is empty or whitespace only; nothing to classify")
    return text


_TOKENIZER = None


def tokenize(text: str) -> list[str]:
    """Word tokens of normalized text via NLTK's ``TweetTokenizer`` (needs no downloaded data).

    It keeps emoticons (``:-)``), hashtags, ``@user`` and emoji as single tokens.
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        from nltk.tokenize import TweetTokenizer

        _TOKENIZER = TweetTokenizer(preserve_case=False, reduce_len=True, strip_handles=False)
    return _TOKENIZER.tokenize(text)
