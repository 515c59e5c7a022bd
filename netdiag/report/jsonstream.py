"""Writing ``netdiag analyze --json`` piece by piece (report stage, issue 6).

``json_text(report_document(analyses))`` builds the whole document as dicts
and then as one string; on a million-packet capture that string alone is
tens of MB, and the pure-Python encoder that ``indent`` selects keeps every
chunk of it in a list before joining them. ``write_analyses_json`` writes the
same bytes to a text stream as it goes: the top-level keys one by one, and
the lists that grow with the file (``"icmp_echo"``, ``"icmp_errors"``,
``"tcp"``, ``"findings"``, possibly read back from disk: analysis/store.py)
one record at a time, so only one record's dict and text exist at any moment.
Several files' analyses go to ``AnalysesJsonWriter`` one at a time, as each
arrives (``netdiag analyze`` releases each file's before it takes the next
one's: commands/analyze.py): the list's elements are written whole, its
opening bracket with the first, so an error before the first leaves nothing.

Byte-identity with ``json_text`` rests on one property of ``json.dumps``
with ``indent``: a nested value is laid out exactly as it would be at the top
level, with every line after the first indented one more level (JSON text
never holds a raw newline: strings escape it). Each piece is encoded by
``_encode``, a narrow copy of what ``json.dumps(indent=2, ensure_ascii=False)``
does. ``tests/test_fast_path.py`` compares both writers on every corpus file
and the encoder with ``json.dumps`` on edge values.

A value made only of plain types with no odd float (``_orjson_safe``) is
encoded by orjson instead (at 1M packets 0.26 s -> ~0.08 s, the walk that
decides included): for those, orjson's ``OPT_INDENT_2`` text is
``json.dumps``' byte for byte; what orjson refuses goes to ``_encode`` too
(see ``_text`` and the notes above it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from json.encoder import encode_basestring
from math import isfinite
from typing import Any, BinaryIO, NoReturn, TextIO

import orjson

from netdiag.analysis.model import Analysis
from netdiag.children import ignore_interrupts, interrupts_held

INDENT = "  "  # json_text's indent=2

# Keys of Analysis.to_json whose value is a list written item by item: the
# lists that grow with the file (possibly read back from disk, see
# analysis/store.py), and the Analysis field each one comes from.
_STREAMED_LISTS: dict[str, str] = {
    "icmp_echo": "icmp_echo",
    "icmp_errors": "icmp_errors",
    "tcp": "tcp",
    "findings": "findings",
}


def _dumps(value: Any, level: int) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, laid out at ``level``."""
    parts: list[str] = []
    _encode(value, level, parts)
    return "".join(parts)


# With ``indent``, CPython's json uses its pure-Python encoder, built from
# generators for every type and option; this one does only what json_text
# asks for (indent 2, ensure_ascii=False, no sort, str/int/float/bool/None
# keys), in json's order of type tests, about 1.7x faster. Strings go through
# json's own (C) escaping, numbers through int/float __repr__ as json does.


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return float.__repr__(value)


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return encode_basestring(key)
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return '"' + int.__repr__(key) + '"'
    if isinstance(key, float):
        return '"' + _float_text(key) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


# Text of a dict key as written before its value (``"key": ``), for the str
# keys that recur in every record; bounded so an odd document cannot grow it.
_KEY_TEXTS: dict[str, str] = {}
_KEY_TEXTS_LIMIT = 4096
# "\n" + the indentation of each level, built once per level.
_LINE_STARTS: list[str] = ["\n"]


def _line_start(level: int) -> str:
    while len(_LINE_STARTS) <= level:
        _LINE_STARTS.append("\n" + INDENT * len(_LINE_STARTS))
    return _LINE_STARTS[level]


def _encode(value: Any, level: int, parts: list[str]) -> None:
    # Exact types first (what the records hold), tested with ``type() is``,
    # which is cheaper than isinstance; anything else (a subclass, an odd
    # value) goes through ``_encode_general``, json's own order of tests, so
    # the text is the same either way. ``bool`` is not ``int`` here: its
    # type is ``bool``.
    kind = type(value)
    if kind is dict:
        _encode_dict(value, level, parts)
    elif kind is str:
        parts.append(encode_basestring(value))
    elif kind is int:
        parts.append(int.__repr__(value))
    elif value is None:
        parts.append("null")
    elif kind is float:
        parts.append(_float_text(value))
    elif kind is list or kind is tuple:
        _encode_list(value, level, parts)
    else:
        _encode_general(value, level, parts)


def _encode_list(value: list[Any] | tuple[Any, ...], level: int, parts: list[str]) -> None:
    if not value:
        parts.append("[]")
        return
    inner = _line_start(level + 1)
    separator = "[" + inner
    for item in value:
        kind = type(item)
        if kind is int:
            parts.append(separator + int.__repr__(item))
        elif kind is str:
            parts.append(separator + encode_basestring(item))
        else:
            parts.append(separator)
            _encode(item, level + 1, parts)
        separator = "," + inner
    parts.append(_line_start(level) + "]")


def _encode_dict(value: dict[Any, Any], level: int, parts: list[str]) -> None:
    if not value:
        parts.append("{}")
        return
    inner = _line_start(level + 1)
    separator = "{" + inner
    key_texts = _KEY_TEXTS
    for key, item in value.items():
        key_text = key_texts.get(key) if type(key) is str else None
        if key_text is None:
            key_text = _key_text(key) + ": "
            if type(key) is str and len(key_texts) < _KEY_TEXTS_LIMIT:
                key_texts[key] = key_text
        # The scalars of a record inline; containers and the rest recurse.
        kind = type(item)
        if kind is int:
            parts.append(separator + key_text + int.__repr__(item))
        elif kind is str:
            parts.append(separator + key_text + encode_basestring(item))
        elif item is None:
            parts.append(separator + key_text + "null")
        elif kind is float:
            # Finite floats (all but odd ones) without the call to _float_text.
            text = float.__repr__(item) if isfinite(item) else _float_text(item)
            parts.append(separator + key_text + text)
        else:
            parts.append(separator + key_text)
            _encode(item, level + 1, parts)
        separator = "," + inner
    parts.append(_line_start(level) + "}")


def _encode_general(value: object, level: int, parts: list[str]) -> None:
    """json's own order of type tests, for values ``_encode`` did not match exactly."""
    if isinstance(value, str):
        parts.append(encode_basestring(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_float_text(value))
    elif isinstance(value, list | tuple):
        _encode_list(value, level, parts)
    elif isinstance(value, dict):
        _encode_dict(value, level, parts)
    else:
        # Whatever json.dumps would refuse or convert: let it decide.
        parts.append(
            json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + INDENT * level)
        )


# -- orjson, for the values it writes exactly as json.dumps does -------------------
#
# Measured against json.dumps(indent=2, ensure_ascii=False) (orjson 3.10 and
# 3.13; the tests pin each case): the same text for dicts (insertion order,
# "key": value, empty {} and []), lists and tuples, str (the same escapes,
# every code point), int in [-2**63, 2**64), bool, None, and floats with
# 1e-4 <= |x| < 1e16 or x == 0 (repr's plain decimal range: both write the
# shortest digits that read back, and -0.0). Outside it they differ:
#   * 0 < |x| < 1e-4: repr writes 1e-05, 2.5e-07; orjson 0.00001, 2.5e-7;
#   * |x| >= 1e16: repr writes 1e+16; orjson the same since 3.11.7, 1e16 before;
#   * NaN and ±inf: json writes NaN/Infinity, orjson null.
# orjson raises for ints beyond 64 bits, non-str keys, str with lone
# surrogates and nesting past 255 levels; and it writes Enum, UUID, dataclass
# and datetime values that json refuses, and treats subclasses its own way.
# ``_orjson_safe`` lets through only exact dict/list/tuple/str/int/float/bool/
# None with floats in the range above; the exceptions are caught; everything
# else takes ``_encode``. An orjson whose text differs on ``_ORJSON_PROBES``
# (another release may format otherwise) is not used at all.

_ORJSON_OPTIONS = orjson.OPT_INDENT_2
# Deeper than orjson accepts (it raises past 255): not worth walking further.
_ORJSON_DEPTH_LIMIT = 254
_SMALLEST_PLAIN_FLOAT = 1e-4  # below it (but not 0), repr switches to 1e-05
_LARGEST_PLAIN_FLOAT = 1e16  # from it up, to 1e+16
_ORJSON_PROBES: list[Any] = [
    {"a": [1, -1, 2**63, 2**64 - 1, -(2**63), True, False, None, [], {}, ()], "b": {"c": ""}},
    [0.0, -0.0, 1.5, 0.1, 1e-4, 0.00012345, 123.456, 1764000000.008252, 1e15],
    [9999999999999998.0, 2.0**53 + 2, 0.30000000000000004, 5e-4, 12345.678, -98.765],
    'quote " backslash \\ newline \n tab \t nul \0 \x1f \x7f \u2028 é ✓ \U0001f600 </',
]


def _orjson_agrees() -> bool:
    """Whether this orjson writes the probes as json.dumps does (checked once)."""
    try:
        return all(
            orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
            == json.dumps(value, indent=2, ensure_ascii=False)
            for value in _ORJSON_PROBES
        )
    except orjson.JSONEncodeError:
        return False


ORJSON_AGREES = _orjson_agrees()


def _orjson_safe(items: Iterable[Any], depth: int = 0) -> bool:
    """Whether the values ``items`` (a list's items, a dict's values) are all
    of exact plain types, with no float orjson would write otherwise."""
    for item in items:
        kind = type(item)
        if kind is str or kind is int or item is None or kind is bool:
            continue
        if kind is float:
            # Comparisons only, no call: NaN fails all three.
            if not (
                _SMALLEST_PLAIN_FLOAT <= item < _LARGEST_PLAIN_FLOAT
                or -_LARGEST_PLAIN_FLOAT < item <= -_SMALLEST_PLAIN_FLOAT
                or item == 0.0
            ):
                return False
        elif kind is dict:
            if depth >= _ORJSON_DEPTH_LIMIT or not _orjson_safe(item.values(), depth + 1):
                return False
        elif kind is list or kind is tuple:
            if depth >= _ORJSON_DEPTH_LIMIT or not _orjson_safe(item, depth + 1):
                return False
        else:
            return False
    return True


def _text(value: Any, level: int) -> str:
    """``_dumps(value, level)``, through orjson when that gives the same text."""
    kind = type(value)
    if not ORJSON_AGREES:
        safe = False
    elif kind is dict:
        safe = _orjson_safe(value.values())
    elif kind is list or kind is tuple:
        safe = _orjson_safe(value)
    else:
        safe = _orjson_safe((value,))
    if safe:
        try:
            data = orjson.dumps(value, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            # Big ints, non-str keys, lone surrogates, deep nesting.
            return _dumps(value, level)
        text = data.decode()
        return text.replace("\n", _line_start(level)) if level else text
    return _dumps(value, level)


def _write_list(out: TextIO, items: Iterable[Any], level: int) -> None:
    """A JSON list at ``level``, each item encoded and written on its own."""
    _write_texts(out, (_text(item, level + 1) for item in items), level)


# -- two processes for the long lists ----------------------------------------
#
# Encoding a record (reading it back from the analysis's temporary file,
# to_json, the text) is nearly all of the writing's time on a big capture,
# and by then the analysis is done: the other CPUs are idle. With ``jobs``
# above 1, a list of at least PARALLEL_RECORDS records is encoded by two
# processes: a forked child takes every other block of BLOCK_RECORDS records
# and sends their texts down a pipe, the parent encodes the other blocks and
# writes everything in order. The child reads the same records (it inherits
# the temporary files' descriptors; ``pread`` keeps no shared offset) and
# never touches ``out``. Should it die, the parent encodes what did not come
# (the same work, so an error in it is raised there, once, as without the
# child); a full pipe only makes the child wait, so memory stays bounded.

PARALLEL_RECORDS = 4096
BLOCK_RECORDS = 256
_LENGTH = struct.Struct("<I")


def _record_text(records: Sequence[Any], index: int, level: int) -> str:
    return _text(records[index].to_json(), level + 1)


def _encode_blocks_in_child(records: Sequence[Any], level: int, pipe: BinaryIO) -> None:
    """The child's part: every odd block's texts, each as its length and UTF-8 bytes."""
    count = len(records)
    for start in range(BLOCK_RECORDS, count, 2 * BLOCK_RECORDS):
        chunk = []
        for index in range(start, min(start + BLOCK_RECORDS, count)):
            data = _record_text(records, index, level).encode()
            chunk.append(_LENGTH.pack(len(data)) + data)
        pipe.write(b"".join(chunk))


def _texts_from_child(pipe: BinaryIO) -> Iterator[str]:
    """The child's texts in order, until the pipe ends (early if the child died)."""
    while True:
        head = pipe.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (length,) = _LENGTH.unpack(head)
        data = pipe.read(length)
        if len(data) < length:
            return
        yield data.decode()


def _write_records_in_two(out: TextIO, records: Sequence[Any], level: int) -> None:
    """``_write_list`` of the records' ``to_json``, odd blocks encoded by a child.

    Without a descriptor or a process to spare (EMFILE, EAGAIN, ENOMEM) this
    process encodes them all: the same text, later.
    """
    try:
        read_end, write_end = os.pipe()
    except OSError:
        _write_list(out, (record.to_json() for record in records), level)
        return
    child = 0
    written = False
    try:
        with interrupts_held():  # a Ctrl-C now reaches this process after the fork
            try:
                child = os.fork()
            except OSError:
                child = 0
            else:
                if child == 0:
                    _child_main(records, level, read_end, write_end)
        os.close(write_end)
        with open(read_end, "rb") as source:
            # No child: the pipe is at its end at once, and every record is encoded here.
            from_child = _texts_from_child(source)

            def texts() -> Iterator[str]:
                for index in range(len(records)):
                    text = None
                    if index // BLOCK_RECORDS % 2:
                        text = next(from_child, None)
                    yield text if text is not None else _record_text(records, index, level)

            _write_texts(out, texts(), level)
        written = True
    finally:
        if child > 0:
            if not written:  # interrupted, or out failed: the child's work is moot
                os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)


def _child_main(records: Sequence[Any], level: int, read_end: int, write_end: int) -> NoReturn:
    """The forked child of ``_write_records_in_two``: its blocks into the pipe, then exit."""
    status = 1
    try:
        ignore_interrupts()  # the parent answers Ctrl-C, and ends this child
        os.close(read_end)
        with open(write_end, "wb") as sink:
            _encode_blocks_in_child(records, level, sink)
        status = 0
    except BaseException:
        # Not lost: the parent encodes every record the child did not send,
        # so the same error is raised there, at the edge, once.
        pass
    finally:
        os._exit(status)  # no atexit, no flushing of the parent's buffers


def _write_texts(out: TextIO, texts: Iterable[str], level: int) -> None:
    """A JSON list at ``level`` of items already encoded at ``level + 1``."""
    inner = INDENT * (level + 1)
    first = True
    for text in texts:
        out.write(("[\n" if first else ",\n") + inner + text)
        first = False
    out.write("[]" if first else "\n" + INDENT * level + "]")


def _write_records(out: TextIO, records: Sequence[Any], level: int, jobs: int) -> None:
    if jobs > 1 and len(records) >= PARALLEL_RECORDS and hasattr(os, "fork"):
        _write_records_in_two(out, records, level)
    else:
        _write_list(out, (record.to_json() for record in records), level)


def _write_analysis(out: TextIO, analysis: Analysis, level: int, jobs: int = 1) -> None:
    """One analysis object as ``Analysis.to_json`` would give it, at ``level``."""
    inner = INDENT * (level + 1)
    # The key order of Analysis.to_json, taken from it on an empty-streams
    # copy, so a key added there is written here too without a change.
    skeleton = _skeleton(analysis)
    out.write("{")
    separator = "\n"
    for key, value in skeleton.items():
        out.write(separator + inner + json.dumps(key, ensure_ascii=False) + ": ")
        field_name = _STREAMED_LISTS.get(key)
        if field_name is not None:
            _write_records(out, getattr(analysis, field_name), level + 1, jobs)
        else:
            out.write(_text(value, level + 1))
        separator = ",\n"
    out.write("}" if separator == "\n" else "\n" + INDENT * level + "}")


def streamed_records(analysis: Analysis) -> int:
    """How many records ``analysis``'s document lists (streams, echoes, ...)."""
    return sum(len(getattr(analysis, field_name)) for field_name in _STREAMED_LISTS.values())


def _skeleton(analysis: Analysis) -> dict[str, Any]:
    """``analysis.to_json()`` without building the streamed lists' dicts."""
    return replace(analysis, icmp_echo=(), icmp_errors=(), tcp=(), findings=()).to_json()


def write_analyses_json(analyses: Sequence[Analysis], out: TextIO, jobs: int = 1) -> None:
    """Write what ``json_text(report_document(analyses))`` returns, to ``out``.

    One object for one analysis, a list for several (or none), then a newline.
    ``jobs > 1`` lets a second process encode half of each long list.
    """
    writer = AnalysesJsonWriter(out, len(analyses), jobs)
    for analysis in analyses:
        writer.write(analysis)
    writer.finish()


class AnalysesJsonWriter:
    """``write_analyses_json`` of ``count`` analyses given one at a time, as they
    arrive (``netdiag analyze`` on several files writes and releases each in
    turn): the same bytes, each element written by ``write`` as a whole, the
    list's opening bracket with the first. ``finish`` ends the document."""

    def __init__(self, out: TextIO, count: int, jobs: int = 1) -> None:
        self._out = out
        self._count = count
        self._jobs = jobs
        self._written = 0

    def write(self, analysis: Analysis) -> None:
        if self._written >= self._count:
            raise ValueError(f"a document of {self._count} analyses has them all already")
        if self._count == 1:
            _write_analysis(self._out, analysis, 0, self._jobs)
        else:
            self._out.write(("[\n" if self._written == 0 else ",\n") + INDENT)
            _write_analysis(self._out, analysis, 1, self._jobs)
        self._written += 1

    def finish(self) -> None:
        if self._written != self._count:
            raise ValueError(f"{self._written} of a document's {self._count} analyses written")
        if self._count == 0:
            self._out.write("[]")
        elif self._count > 1:
            self._out.write("\n]")
        self._out.write("\n")
