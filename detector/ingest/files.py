"""Turn the paths a user gave into input files, each with its format and compression."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import MAX_INPUT_MIB
from ..errors import InputError

FORMATS = ("parquet", "csv", "jsonl", "json")
FOREIGN = ("prometheus", "nvml", "cloudtrail", "vpcflow", "sshd")  # detector/ingest/formats.py
SNIFF = "sniff"  # the content decides (detector/ingest/sniff.py)
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".prom": "prometheus",
    ".om": "prometheus",
    ".log": SNIFF,
}


MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one input may cost: bytes held after decompression, bytes in one line of text,
    nesting depth of one JSON value. Beyond them a file is refused or a line quarantined."""

    max_bytes: int = MAX_INPUT_MIB * MIB  # --max-input-mib
    max_line: int = 1 * MIB
    max_depth: int = 64


@dataclass(frozen=True)
class InputFile:
    """One file to read: where it is, its format, whether it is gzip-compressed, its limits."""

    path: Path
    fmt: str
    gzip: bool
    limits: Limits = Limits()

    @property
    def name(self) -> str:
        return str(self.path)


def expand(
    paths: Sequence[str | Path] | str | Path, fmt: str = "auto", limits: Limits = Limits()
) -> list[InputFile]:
    """Every input file named by `paths`, in the order given; folders are walked in name order.

    Inside a folder, files with unknown extensions and hidden or bookkeeping files (names
    starting with '.' or '_', such as `_SUCCESS`) are skipped. `fmt` other than "auto" forces the
    format (a `.gz` suffix still means gzip).
    """
    if fmt != "auto" and fmt not in FORMATS + FOREIGN:
        raise InputError(
            f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS + FOREIGN)}"
        )
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[InputFile] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError("no such file or folder", path=str(path))
        if path.is_dir():
            found = [
                _classify(p, fmt, limits, named=False)
                for p in sorted(path.rglob("*"))
                if p.is_file() and not _hidden(p.relative_to(path))
            ]
            readable = [f for f in found if f is not None]
            if not readable:
                raise InputError(
                    "folder holds no readable files (.parquet, .csv, .jsonl, .json,"
                    " .prom, .om, .log, optionally .gz)",
                    path=str(path),
                )
            out.extend(readable)
        else:
            one = _classify(path, fmt, limits, named=True)
            if one is None and all(s.lower() == ".gz" for s in path.suffixes):  # sniff it
                one = InputFile(path, SNIFF, False, limits)
            if one is None:
                raise InputError(
                    "unknown file extension; expected .parquet, .csv, .jsonl or"
                    " .json, optionally .gz, or pass a format",
                    path=str(path),
                )
            out.append(one)
    if not out:
        raise InputError("no input files given")
    return out


def read_head(file: InputFile, size: int) -> bytes:
    """At most `size` bytes from the start of the file, decompressed when it is gzip."""
    try:
        with gzip.open(file.path, "rb") if file.gzip else open(file.path, "rb") as fh:
            return fh.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read file: {_describe(exc)}", path=file.name) from exc


def read_bytes(file: InputFile) -> bytes:
    """The file's content, decompressed when it is gzip; InputError beyond `max_bytes`."""
    limit = file.limits.max_bytes
    data = read_head(file, limit + 1)
    if len(data) > limit:
        raise InputError(
            f"holds more than {limit // MIB} MiB{' once decompressed' if file.gzip else ''}"
            " (the limit; raise it with --max-input-mib, or split the file)",
            path=file.name,
        )
    return data


def open_parquet(file: InputFile, dictionary: Sequence[str] = ()) -> pq.ParquetFile:
    """A Parquet file (gzip: read whole), its text columns `dictionary` read as codes."""
    handle = pa.BufferReader(read_bytes(file)) if file.gzip else str(file.path)
    with parquet_errors(file):
        stored = pq.read_schema(handle)
        text = [f.name for f in stored if f.name in dictionary and pa.types.is_string(f.type)]
        return pq.ParquetFile(handle, read_dictionary=text)


@contextmanager
def parquet_errors(file: InputFile) -> Iterator[None]:
    """What pyarrow raises on a corrupt, empty or truncated Parquet file, as InputError."""
    try:
        yield
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # names not UTF-8
        raise InputError(f"cannot read Parquet: {exc}", path=file.name) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile | EOFError | zlib.error):
        return f"invalid or truncated gzip ({exc or type(exc).__name__})"
    return str(exc) or type(exc).__name__


def _classify(path: Path, fmt: str, limits: Limits, *, named: bool) -> InputFile | None:
    """Format and compression of one file from its name (None: an unknown extension); a forced
    `fmt` applies to any file named directly, and to the files of a folder whose extension is
    known."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = suffixes[-1:] == [".gz"]
    last = suffixes[-2:-1] if gz else suffixes[-1:]
    known = _SUFFIXES.get(last[0]) if last else None
    if fmt != "auto" and (named or known):
        return InputFile(path, fmt, gz, limits)
    return InputFile(path, known, gz, limits) if known else None


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)
