"""Reading the small files the exporter is given (configuration, key, web configuration), safely.

A path may name anything: a FIFO or a device would block the reader or never end, and a huge file
would take the memory. So only regular files are read, opened without blocking, up to a size
limit. YAML is read with aliases refused: an alias bomb ("billion laughs") is a few hundred bytes
that expand to gigabytes, and no configuration of ours needs an alias.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml

# Far beyond any real configuration, key or certificate; small enough to read without a thought.
MAX_FILE_BYTES = 1024 * 1024


class FileProblem(ValueError):
    """The file cannot be used; ``str()`` is one line that never quotes the file's content."""


def read_small_file(path: str, limit: int = MAX_FILE_BYTES, what: str = "") -> bytes:
    """The bytes of ``path``; ``what`` names the file in messages (\"config file\")."""
    name = f"{what} {path}" if what else path
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise FileProblem(f"{name} is not a regular file")
        # O_NONBLOCK: should the path become a FIFO after the check, open() still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise FileProblem(f"cannot read {name}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileProblem(f"{name} is not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                raise FileProblem(f"{name} is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise FileProblem(f"cannot read {name}: {err.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: str, limit: int = MAX_FILE_BYTES, what: str = "") -> str:
    try:
        return read_small_file(path, limit, what).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{path} is not UTF-8 text") from None


def load_yaml(path: str, limit: int = MAX_FILE_BYTES, what: str = "") -> Any:
    """The YAML document in ``path``: plain data, no aliases, numbers of sane length."""
    return parse_yaml(read_text(path, limit, what), path)


def parse_yaml(text: str, path: str) -> Any:
    """``text`` read from ``path`` (named in errors), loaded as ``load_yaml`` does."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader, stricter still
    except RecursionError:
        raise FileProblem(f"{path} is nested too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None)
        why = f": {problem}" if isinstance(problem, str) and problem.startswith(_OWN_PROBLEMS) else ""
        raise FileProblem(f"{path} is not valid YAML{where}{why}") from None


_OWN_PROBLEMS = ("aliases are not allowed", "number too long")
# Longer digit strings are surely mistakes (and Python refuses past 4300 digits anyway).
_MAX_NUMBER_LENGTH = 100


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", event.start_mark)
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node):
        return super().construct_yaml_int(_short_number(node))

    def construct_yaml_float(self, node):
        return super().construct_yaml_float(_short_number(node))


def _short_number(node):
    if len(node.value) > _MAX_NUMBER_LENGTH:
        raise yaml.constructor.ConstructorError(None, None, "number too long", node.start_mark)
    return node


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)
