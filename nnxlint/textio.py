"""Reading and writing source files without changing a byte the user did not ask for."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

BOM = b"\xef\xbb\xbf"


_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def python_lines(text: str, keepends: bool = False) -> list[str]:
    """``text`` split into lines as Python's tokenizer splits it: at ``\n``, ``\r\n``
    and ``\r`` only (``str.splitlines`` also splits at form feeds, ``\x1c``-``\x1e``,
    ``\x85``, U+2028 and U+2029, which are ordinary characters to Python)."""
    pieces = _LINE_BREAK.split(text)  # line, break, line, break, ..., last line
    if keepends:
        lines = [pieces[i] + pieces[i + 1] for i in range(0, len(pieces) - 1, 2)]
    else:
        lines = pieces[0::2][:-1]
    return lines + [pieces[-1]] if pieces[-1] else lines


def resolved(path: Union[str, os.PathLike]) -> Path:
    """``path`` resolved, or only made absolute where it cannot be (a symlink loop)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


class SourceError(Exception):
    """The file cannot be read or decoded; the message says why."""


@dataclass(frozen=True)
class Source:
    text: str  # newlines exactly as in the file
    encoding: str
    bom: bool

    def encode(self, text: str) -> bytes:
        data = text.encode(self.encoding)
        return BOM + data if self.bom else data


def decode(data: bytes) -> Source:
    if b"\0" in data:  # CPython refuses NUL bytes in source; an image or archive named .py
        raise SourceError("binary file (it contains NUL bytes), not Python source")
    bom = data.startswith(BOM)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        raise SourceError(f"invalid encoding declaration: {error}") from None
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    body = data[len(BOM):] if bom else data
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as error:
        raise SourceError(
            f"file is not valid {encoding} (byte 0x{body[error.start]:02x} at offset {error.start}); "
            "declare its encoding with a coding comment or convert it to UTF-8") from None
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r} in the coding declaration") from None
    return Source(text, encoding, bom)


def read_regular(path: Union[str, os.PathLike], limit: Optional[int] = None) -> bytes:
    """The bytes of the regular file ``path``. Raises OSError for anything else (opening a
    FIFO or a device must not block the run) and FileTooLarge above ``limit`` bytes."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if limit is not None and status.st_size > limit:
            raise FileTooLarge(status.st_size)
        return handle.read()


class FileTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def read_source(path: str) -> Source:
    try:
        data = read_regular(path)
    except OSError as error:
        raise SourceError(f"cannot read file: {error.strerror or error}") from None
    return decode(data)


def replace_file(path: Union[str, os.PathLike], data: bytes, mode: Optional[int] = None,
                 durable: bool = True) -> None:
    """Create or replace ``path`` in one step (a temporary file in the same directory,
    then a rename): readers see the old file or the new one, never half of either."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".nnxlint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_atomic(path: str, data: bytes) -> None:
    """Replace the user's file ``path`` with ``data`` all at once, keeping its mode.

    Raises OSError (file vanished, directory or file not writable) without
    touching the original.
    """
    target = os.path.realpath(path)  # through a symlink: the link stays a link, as editors keep it
    status = os.stat(target)
    # the write bits, not os.access: root may write anything, but a file marked
    # read-only is one the user does not want rewritten
    if not status.st_mode & 0o222 or not os.access(target, os.W_OK):
        raise PermissionError(13, "file is read-only", path)
    if status.st_nlink > 1:  # a rename would split the file from its other names: write in place
        with open(target, "r+b") as stream:
            stream.write(data)
            stream.truncate()
            stream.flush()
            os.fsync(stream.fileno())
        return
    replace_file(target, data, status.st_mode)


def write_all_atomic(files: dict[str, bytes]) -> None:
    """Replace several files together (a project-level fix): each as ``write_atomic``
    does, all or none.  Every file is checked and its new content written to a
    temporary file beside it first; only when all of them are ready are they renamed
    into place (renames in one directory do not fail for want of space).  Raises
    OSError, with no file changed, when any of them cannot be written."""
    prepared: list[tuple[str, str]] = []  # (temporary, target)
    in_place: list[tuple[str, bytes]] = []  # hard-linked files: written in place, last
    try:
        for path, data in files.items():
            target = os.path.realpath(path)
            status = os.stat(target)
            if not status.st_mode & 0o222 or not os.access(target, os.W_OK):
                raise PermissionError(13, "file is read-only", path)
            if status.st_nlink > 1:
                in_place.append((target, data))
                continue
            handle, temporary = tempfile.mkstemp(prefix=".nnxlint-", suffix=".tmp", dir=os.path.dirname(target))
            prepared.append((temporary, target))
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, status.st_mode & 0o7777)
    except BaseException:
        for temporary, _ in prepared:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        raise
    for temporary, target in prepared:
        os.replace(temporary, target)
    for target, data in in_place:
        with open(target, "r+b") as stream:
            stream.write(data)
            stream.truncate()
            stream.flush()
            os.fsync(stream.fileno())
