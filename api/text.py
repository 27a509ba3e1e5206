"""Which characters free text may hold: one rule for every text field the API accepts (the
prompt, user ids in bodies and queries, image URLs, a callback's task id and status).

Refused, because each is invisible or reorders what a person sees, corrupts what a log or a
terminal shows, or cannot be stored as UTF-8 at all (and text reaches Temporal history, search
attributes, logs and the Web UI):

- C0 controls U+0000-U+001F (NUL, ESC, ...), except TAB, LF and CR in multi-line text (the
  prompt); single-line text (ids, URLs, statuses) refuses those too;
- DEL U+007F and the C1 controls U+0080-U+009F;
- U+FEFF (byte order mark / zero-width no-break space);
- the BiDi embedding, override and isolate controls U+202A-U+202E and U+2066-U+2069 (text
  that displays in another order than it is stored: "Trojan Source"); the plain direction
  marks U+200E, U+200F and U+061C stay allowed, as right-to-left prose needs them;
- lone surrogates U+D800-U+DFFF (JSON can spell them as `\\ud800` escapes).

Everything else, emoji and joiners included, is text.
"""

from __future__ import annotations

import re
import unicodedata

_TAB_AND_LINE_BREAKS = ((0x09, 0x0A), (0x0D, 0x0D))
_REFUSED_ALWAYS = (
    (0x00, 0x08),
    (0x0B, 0x0C),
    (0x0E, 0x1F),
    (0x7F, 0x9F),
    (0xFEFF, 0xFEFF),
    (0x202A, 0x202E),
    (0x2066, 0x2069),
)
SURROGATES = (0xD800, 0xDFFF)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    merged: list[list[int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return "".join(f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in merged)


def _refused(multiline: bool) -> tuple[tuple[int, int], ...]:
    return _REFUSED_ALWAYS if multiline else _REFUSED_ALWAYS + _TAB_AND_LINE_BREAKS


def json_schema_pattern(*, multiline: bool) -> str:
    """The rule as a JSON Schema `pattern`, for clients that validate before they send. Lone
    surrogates are left out: in a UTF-16 regex engine (JavaScript) the class would also match
    each half of an emoji; JSON text can only carry them as escapes, which the server refuses."""
    return f"^[^{_char_class(_refused(multiline))}]*$"


_SEARCH = {
    multiline: re.compile(f"[{_char_class((*_refused(multiline), SURROGATES))}]")
    for multiline in (True, False)
}


_LONE_SURROGATE = re.compile(f"[{_char_class((SURROGATES,))}]")


def lone_surrogate_problem(value: str) -> str | None:
    """The part of the rule that holds for every string in a JSON body, free text or not: a
    lone surrogate cannot be encoded as UTF-8, so it would fail later, in a log line, a
    Temporal payload or a search attribute."""
    found = _LONE_SURROGATE.search(value)
    return None if found is None else f"contains {describe_char(found.group())} at position {found.start()}"


def describe_char(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`, `U+0000 (control character)`, `U+D800 (lone surrogate)`."""
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    if name:
        return f"{code} {name}"
    kind = "lone surrogate" if unicodedata.category(char) == "Cs" else "control character"
    return f"{code} ({kind})"


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text (naming the first refused character and where it
    is), or None."""
    found = _SEARCH[multiline].search(value)
    if found is None:
        return None
    return (
        f"contains {describe_char(found.group())} at position {found.start()}; control, "
        "byte-order and BiDi override characters are not allowed"
    )
