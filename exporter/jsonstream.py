"""The items of a ``{"object": "list", "data": [...]}`` answer, one at a time, as its bytes arrive.

The standard library parses JSON only whole, and a whole job list of a large organisation is
hundreds of megabytes of text and more again as Python objects. ``ListItems`` scans just the
outer object and hands each item of ``data`` to ``json.JSONDecoder.raw_decode`` as soon as it is
complete, so what is held at once is one item and one read step, not the list.

The outer object's other members are decoded and dropped. ``"data": null`` or no ``data`` is an
empty list, as the SDK reads it. What ``json.loads`` would refuse is refused here as
``json.JSONDecodeError``; valid JSON of another shape raises ``InvalidResponse``; an item (or
another member's value) longer than ``max_item`` characters raises ``ItemTooLarge``.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, Iterator

from .model import InvalidResponse

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
_DECODER = json.JSONDecoder()


class ItemTooLarge(ValueError):
    pass


class ListItems:
    """Feed the body's bytes with ``feed``; each call yields the list items completed by them."""

    def __init__(self, max_item: int):
        self._max_item = max_item
        self._text = codecs.getincrementaldecoder("utf-8")("strict")
        self._buf = ""
        self._pos = 0
        self._waiting: list[str] = []  # text not yet joined onto the buffer
        self._waiting_len = 0
        self._want = 0  # unread characters needed before an unfinished value is tried again
        self._state = "start"
        self._key: Any = None  # the outer object's member being read
        self._seen_data = False
        self._first_text = True

    def feed(self, chunk: bytes) -> Iterator[Any]:
        try:
            text = self._text.decode(chunk)
        except UnicodeDecodeError as err:
            raise json.JSONDecodeError(f"not UTF-8: {err.reason}", "", 0) from None
        if self._first_text and text:
            self._first_text = False
            if text.startswith("\ufeff"):  # json.loads of bytes skips a UTF-8 BOM too
                text = text[1:]
        self._waiting.append(text)
        self._waiting_len += len(text)
        if len(self._buf) - self._pos + self._waiting_len < self._want:
            return  # joined only when enough has come: a long item is not copied once per read step
        self._join()
        yield from self._scan(final=False)

    def _join(self) -> None:
        self._buf = self._buf[self._pos:] + "".join(self._waiting)
        self._pos, self._waiting, self._waiting_len = 0, [], 0

    def close(self) -> Iterator[Any]:
        """The body has ended: the items still in the buffer; an error if the list is not complete."""
        try:
            self._waiting.append(self._text.decode(b"", final=True))
        except UnicodeDecodeError as err:
            raise json.JSONDecodeError(f"not UTF-8: {err.reason}", "", 0) from None
        self._join()
        yield from self._scan(final=True)
        if self._state != "done":
            raise json.JSONDecodeError("the body ends inside the list", self._buf, len(self._buf))

    # -- the outer object, token by token --------------------------------------------------------

    def _scan(self, final: bool) -> Iterator[Any]:
        while True:
            self._pos = _end_of(_SPACE, self._buf, self._pos)
            if self._state == "done":
                if self._pos < len(self._buf):
                    raise json.JSONDecodeError("Extra data", self._buf, self._pos)
                return
            if self._pos >= len(self._buf):
                return
            char = self._buf[self._pos]
            state = self._state
            if state == "start":
                if char != "{":
                    if self._value(final) is _MORE:  # JSON of another shape, or none at all: say which
                        return
                    raise InvalidResponse('expected {"object": "list", "data": [...]}')
                self._pos += 1
                self._state = "key_or_end"
            elif state in ("key_or_end", "key"):
                if char == "}" and state == "key_or_end":
                    self._pos += 1
                    self._state = "done"
                    continue
                if char != '"':
                    raise json.JSONDecodeError("Expecting property name enclosed in double quotes", self._buf, self._pos)
                key = self._value(final)
                if key is _MORE:
                    return
                self._key = key
                self._state = "colon"
            elif state == "colon":
                if char != ":":
                    raise json.JSONDecodeError("Expecting ':' delimiter", self._buf, self._pos)
                self._pos += 1
                self._state = "value"
            elif state == "value":
                if self._key == "data" and char == "[":
                    if self._seen_data:
                        raise InvalidResponse('"data" given twice')
                    self._seen_data = True
                    self._pos += 1
                    self._state = "item_or_end"
                    continue
                value = self._value(final)
                if value is _MORE:
                    return
                if self._key == "data" and value is not None:
                    raise InvalidResponse('expected {"object": "list", "data": [...]}')
                self._state = "member_end"
            elif state == "member_end":
                if char not in ",}":
                    raise json.JSONDecodeError("Expecting ',' delimiter", self._buf, self._pos)
                self._pos += 1
                self._state = "key" if char == "," else "done"
            elif state in ("item_or_end", "item"):
                if char == "]" and state == "item_or_end":
                    self._pos += 1
                    self._state = "member_end"
                    continue
                item = self._value(final)
                if item is _MORE:
                    return
                self._state = "item_end"
                yield item
            elif state == "item_end":
                if char not in ",]":
                    raise json.JSONDecodeError("Expecting ',' delimiter", self._buf, self._pos)
                self._pos += 1
                self._state = "item" if char == "," else "member_end"

    def _value(self, final: bool) -> Any:
        """The JSON value at the position, or ``_MORE`` when the buffer may end inside it."""
        try:
            value, end = _DECODER.raw_decode(self._buf, self._pos)
        except json.JSONDecodeError as err:
            if final or not _maybe_cut(err, len(self._buf)):
                raise
            return self._later()
        if not final and (end >= len(self._buf) or _end_of(_NUMBER_TAIL, self._buf, end) >= len(self._buf)):
            return self._later()  # a number (2. then 5), true or null may go on in the next chunk
        self._pos, self._want = end, 0
        return value

    def _later(self) -> object:
        pending = len(self._buf) - self._pos
        if pending > self._max_item:
            raise ItemTooLarge(f"a list item over {self._max_item} characters")
        # Try again once half as much again has come: a long item is decoded a few times, not
        # once per read step.
        self._want = pending + max(pending // 2, 1)
        return _MORE


def _end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern`` (which also matches nothing) stops matching from ``pos``."""
    found = pattern.match(text, pos)
    assert found is not None
    return found.end()


def _maybe_cut(err: json.JSONDecodeError, length: int) -> bool:
    """Whether the decoder may have failed only because the text ends too soon."""
    # An unterminated string is reported where it starts; a cut escape or word (-Infinit) a few
    # characters before the end; anything else that is only cut short, at the end.
    return err.msg.startswith("Unterminated string") or err.pos >= length - 10


_MORE = object()
