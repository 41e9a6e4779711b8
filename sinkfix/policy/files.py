"""Which text files a visitor may make the server read: files in the data folders, or their own upload.

The data folders are ``SINKFIX_DATA`` (default: the project's shared data folder, ``../shared/data``
beside a source checkout; installed, ``data/`` in SinkFix's cache folder) and every folder in
``SINKFIX_DATA_DIRS`` (separated by ``os.pathsep``).
A visitor names a file relative to a data folder (``tinyshakespeare.txt``) or by its absolute path.
The name is resolved first (symlinks and ``..``), then checked: it must lie inside a data folder and be
a regular file. Anything else, a missing file, a forbidden one, a folder, a device, a symlink that
leads out, gets the same one line (``REFUSAL``), so the answer says nothing about the server's disk.

Reads are bounded: a data-folder file is read up to the server's text limit (its first bytes, cut on a
character boundary); an upload over the limit is refused.
"""
from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sinkfix.errors import InputError
from sinkfix import paths

DATA_ENV = "SINKFIX_DATA"
MORE_DATA_ENV = "SINKFIX_DATA_DIRS"
REFUSAL = "that file is not available here: name a text file in the data folders, or upload one"
LISTED = 200  # at most this many file names are listed for a form (a data folder may be large)


class FileNotAllowedError(InputError):
    """The named file is missing, or outside the data folders, or not a regular file: one answer for all."""


@dataclass(frozen=True)
class TextFile:
    name: str  # relative to its data folder, or the upload's own name: never a server path
    text: str
    size: int  # bytes in the whole file
    cut: bool  # only the first ``limit`` bytes were read


def default_data() -> Path:
    """``../shared/data`` beside a source checkout (where this project keeps its data); installed, the cache's."""
    return paths.REPO_ROOT.parent / "shared" / "data" if paths.is_source_checkout() else paths.cache_dir() / "data"


def data_folders() -> tuple[Path, ...]:
    """The allowed folders, resolved, in order (SINKFIX_DATA first)."""
    raw = [os.environ.get(DATA_ENV) or str(default_data())]
    raw += [part for part in os.environ.get(MORE_DATA_ENV, "").split(os.pathsep) if part.strip()]
    folders: list[Path] = []
    for entry in raw:
        folder = Path(entry.strip()).resolve()
        if folder not in folders:
            folders.append(folder)
    return tuple(folders)


def resolve(raw: str, folders: tuple[Path, ...] | None = None, folder_ok: bool = False) -> Path:
    """The real path of the file ``raw`` names, if it lies in a data folder; else FileNotAllowedError.

    ``folder_ok``: a folder inside a data folder is accepted too (a data set kept as a folder).
    """
    folders = data_folders() if folders is None else folders
    raw = raw.strip()
    if not raw or "\x00" in raw:
        raise FileNotAllowedError(REFUSAL)
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [folder / given for folder in folders]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)  # follows every symlink and '..' before the check
            kind = real.stat().st_mode
        except (OSError, RuntimeError):  # missing, a symlink loop, no permission: all the same answer
            continue
        inside = any(real.is_relative_to(folder) for folder in folders)
        if inside and (stat.S_ISREG(kind) or (folder_ok and stat.S_ISDIR(kind))):
            return real
    raise FileNotAllowedError(REFUSAL)


def shown_name(path: Path, folders: tuple[Path, ...] | None = None) -> str:
    """The name a page and a stored result use: relative to its data folder, not the server's path."""
    for folder in data_folders() if folders is None else folders:
        if path.is_relative_to(folder):
            return path.relative_to(folder).as_posix() or "."
    return path.name


def read_text(raw: str, limit: int, folders: tuple[Path, ...] | None = None) -> TextFile:
    """The first ``limit`` bytes of a data-folder file, as text (cut on a character boundary)."""
    folders = data_folders() if folders is None else folders
    path = resolve(raw, folders)
    try:
        # O_NOFOLLOW and the fstat check: what is read is the regular file that was checked.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FileNotAllowedError(REFUSAL)
            data = handle.read(limit)
    except OSError:
        raise FileNotAllowedError(REFUSAL) from None
    name = shown_name(path, folders)
    cut = info.st_size > len(data)
    return TextFile(name, _decode(data, cut, name), info.st_size, cut)


def read_upload(name: str, data: bytes, limit: int) -> TextFile:
    """A visitor's uploaded file as text; over ``limit`` bytes it is refused (nothing is cut silently)."""
    if len(data) > limit:
        raise InputError(f"{name} is {len(data):,} bytes, over this server's limit of {limit:,} bytes "
                         "(SINKFIX_MAX_BODY)")
    return TextFile(name, _decode(data, False, name), len(data), False)


def check_text(text: str, limit: int, what: str = "the text") -> None:
    """Refuse a typed or pasted text over the server's limit (the same bytes as an API body)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InputError(f"{what} is {size:,} bytes, over this server's limit of {limit:,} bytes (SINKFIX_MAX_BODY)")


def listed(pattern: str = "*.txt", folders: tuple[Path, ...] | None = None) -> list[str]:
    """Names of the files a visitor may pick (at most LISTED), for a form's default and help."""
    names: list[str] = []
    for folder in data_folders() if folders is None else folders:
        if not folder.is_dir():
            continue
        for path in sorted(itertools.islice(folder.rglob(pattern), LISTED)):
            try:
                real = resolve(str(path), folders)
            except FileNotAllowedError:  # a symlink that leads out is not offered either
                continue
            name = shown_name(real, folders)
            if name not in names:
                names.append(name)
    return names[:LISTED]


def _decode(data: bytes, cut: bool, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        # A cut may split the last character: drop its first bytes, keep the rest.
        if cut and error.reason == "unexpected end of data" and error.start >= len(data) - 3:
            return data[:error.start].decode("utf-8")
        raise InputError(f"{name} is not UTF-8 text") from None
