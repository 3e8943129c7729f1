"""Names people read (session names, tags, alert rule names): no control or format characters.

A NUL, a BEL, a newline or a bidi override (U+202E) in a name breaks every table it is printed
in and can make one name pass for another; Unicode's categories Cc (controls) and Cf (format
characters: bidi controls, zero-width characters, soft hyphen...) are refused.
"""

from __future__ import annotations

import functools
import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf"})


def refused_chars(text: str) -> list[str]:
    """The characters of `text` a name may not hold, each once, in order."""
    seen: list[str] = []
    for ch in text:
        if unicodedata.category(ch) in REFUSED_CATEGORIES and ch not in seen:
            seen.append(ch)
    return seen


def describe(chars: list[str]) -> str:
    return ", ".join(f"U+{ord(c):04X}" for c in chars)


def check_name(text: str) -> str:
    """`text`, or ValueError naming the control or format characters it holds."""
    bad = refused_chars(text)
    if bad:
        raise ValueError(f"must not contain control or format characters (found {describe(bad)})")
    return text


# Where Unicode puts its controls and format characters: planes 0, 1 and 14 (tags). Scanning
# only these keeps the import quick; `check_name` itself asks unicodedata about every character.
_PLANES = (range(0, 0x20000), range(0xE0000, 0xF0000))


def _ranges() -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in (cp for plane in _PLANES for cp in plane):
        if unicodedata.category(chr(cp)) in REFUSED_CATEGORIES:
            if out and out[-1][1] == cp - 1:
                out[-1] = (out[-1][0], cp)
            else:
                out.append((cp, cp))
    return out


def _spell(cp: int) -> str:
    # \uXXXX reads the same in ECMA-262 (JSON Schema's dialect), Python and most engines; a
    # character beyond the BMP has no such escape in ECMA-262 without the u flag: it is written
    # as itself.
    return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)


@functools.cache
def name_pattern() -> str:
    """What `check_name` accepts, as a JSON Schema pattern (for documentation: the check is
    the code). Made on first use: it scans a few hundred thousand code points."""
    parts = [_spell(a) if a == b else f"{_spell(a)}-{_spell(b)}" for a, b in _ranges()]
    return "^[^" + "".join(parts) + "]*$"
