"""Debian version ordering, as dpkg defines it (deb-version(7)).

Used to tell whether a mirror's version of a package is newer than the one a
template has installed (``goldsmith outdated``), and whether a package moved up
or down between two templates of a lineage (``goldsmith history``). Versions
come from mirrors' indexes and manifests, so malformed ones raise ValueError
and absurdly long ones cost no more than their length.
"""

from __future__ import annotations


def _is_digit(char: str) -> bool:
    # ASCII only: str.isdigit() would also accept superscripts and other scripts' digits.
    return "0" <= char <= "9"


def _order(char: str) -> int:
    """dpkg's weight of a character in a non-digit run: ~ below everything, then
    the end of the run (0), then letters, then every other character."""
    if _is_digit(char):
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """Compare two upstream versions or two revisions the way dpkg does: alternate
    runs of non-digits (character by character, by ``_order``) and runs of digits
    (as numbers), until both strings are used up."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _is_digit(a[i])) or (j < len(b) and not _is_digit(b[j])):
            weight_a = _order(a[i]) if i < len(a) else 0
            weight_b = _order(b[j]) if j < len(b) else 0
            if weight_a != weight_b:
                return -1 if weight_a < weight_b else 1
            i, j = i + 1, j + 1
        start_a, start_b = i, j
        while i < len(a) and _is_digit(a[i]):
            i += 1
        while j < len(b) and _is_digit(b[j]):
            j += 1
        # Compared as numbers without int(): a run of thousands of digits from a
        # mirror's index must neither hit int()'s digit limit nor cost time.
        digits_a = a[start_a:i].lstrip("0")
        digits_b = b[start_b:j].lstrip("0")
        if (len(digits_a), digits_a) != (len(digits_b), digits_b):
            return -1 if (len(digits_a), digits_a) < (len(digits_b), digits_b) else 1
    return 0


def parse_version(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision) as dpkg splits them; ValueError if malformed."""
    text = version.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"not a Debian version: {version!r}")
    epoch = 0
    if ":" in text:
        head, text = text.split(":", 1)
        if not head or not all(_is_digit(c) for c in head) or len(head) > 18:
            raise ValueError(f"epoch of {version!r} is not a number")
        epoch = int(head)
    upstream, hyphen, revision = text.rpartition("-")
    if not hyphen:
        upstream, revision = text, ""
    if not upstream:
        raise ValueError(f"{version!r} has an empty upstream version")
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` sorts before, equal to or after ``b``.

    Epochs first (a missing epoch is 0), then the upstream version, then the
    revision (a missing revision equals "0"). Within each part, runs of non-digits
    compare character by character with ``~`` sorting before everything, even
    the end of the string (so 1.0~rc1 < 1.0), and letters before other symbols;
    runs of digits compare as numbers (so 1.10 > 1.9 and 1.01 == 1.1).
    """
    epoch_a, upstream_a, revision_a = parse_version(a)
    epoch_b, upstream_b, revision_b = parse_version(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)
