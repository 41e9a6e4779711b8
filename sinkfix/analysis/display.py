"""One token display for every table, chart, label and printed line (no Streamlit here).

Tokenizers write tokens in their own codes: byte-level BPE (GPT-2, LLaMA-3, SmolLM2) remaps bytes
so that a leading space is ``Ġ``, a newline ``Ċ`` and the UTF-8 bytes of ``’`` are ``âĢĻ``;
SentencePiece marks a word start with ``▁``; WordPiece marks a word continuation with ``##``.
``show_token`` turns all of them into one reading: a space is ``␣``, a newline ``↵``, a tab ``⇥``,
a continuation piece starts with ``·``, other control characters are escaped (``\\x07``), and
special tokens (``[CLS]``, ``<|endoftext|>``) stay as they are. The dashboard and the CLI both use
it, so ``Ġquick`` reads ``␣quick`` everywhere. The result is still user data: callers show it as
chart text, table cells or plain printed text, never as markup.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

LABEL_CHARS = 12
CONTINUATION = "·"

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
# Without a full byte-level decode, these markers alone are still made readable.
_MARKS = str.maketrans({"Ġ": "␣", "Ċ": "↵", "ĉ": "⇥", "▁": "␣"})
_SPECIAL = re.compile(r"^(\[[A-Za-z_]+\]|<\|?[^<>\s]+\|?>|<0x[0-9A-Fa-f]{2}>)$")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted (the same table every byte-level BPE uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def is_special(token: str) -> bool:
    """[CLS], [SEP], <s>, <|endoftext|>, <|im_start|>, SentencePiece byte tokens like <0x0A>."""
    return bool(_SPECIAL.match(token))


def _byte_level(token: str) -> str | None:
    """The text a byte-level BPE token stands for, or None when it is not one (or not whole UTF-8)."""
    if token.isascii():  # printable ASCII maps to itself: nothing to decode
        return None
    table = _byte_decoder()
    if not all(c in table for c in token):
        return None
    try:
        return bytes(table[c] for c in token).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _visible(text: str) -> str:
    out = []
    for char in text:
        if char in _VISIBLE:
            out.append(_VISIBLE[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") or char == "\u00a0":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def show_token(token: str, limit: int | None = None) -> str:
    """A token as a reader knows it (see the module docstring), cut to ``limit`` characters with …"""
    token = str(token)
    if is_special(token):
        shown = token
    elif token.startswith("##") and len(token) > 2:
        shown = CONTINUATION + _visible(token[2:])
    else:
        decoded = _byte_level(token)
        shown = _visible(decoded if decoded is not None else token.translate(_MARKS))
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


def show_tokens(tokens: Sequence[str], limit: int | None = None) -> list[str]:
    return [show_token(t, limit) for t in tokens]


def position_labels(tokens: Sequence[str], limit: int = LABEL_CHARS) -> list[str]:
    """"3 ␣the": the position makes repeated tokens ([MASK] [MASK]) distinct categories on an axis."""
    return [f"{i} {show_token(t, limit)}" for i, t in enumerate(tokens)]

SINK_COLUMN = "<sink>"  # the learned-sink virtual column (gpt-oss), never a real token
# One colour per label for charts and HTML summaries (green: beneficial, red: detrimental, grey: neutral).
LABEL_COLOR = {"beneficial": "#1a9850", "detrimental": "#d73027", "neutral": "#9e9e9e"}
