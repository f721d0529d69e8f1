"""The exception hierarchy: the library raises these, only the CLI turns them into one line."""

from __future__ import annotations

# The exit codes of `gpuwatch` (README, "Exit codes").
EXIT_OK = 0
EXIT_ALERTS = 1  # alerts found with --fail-on-alert
EXIT_USAGE = 2  # bad input or usage
EXIT_INTERNAL = 3  # a bug: one line names the file holding the traceback
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class GpuwatchError(Exception):
    """Base class of every error gpuwatch raises on purpose."""

    exit_code = EXIT_USAGE


class InputError(GpuwatchError):
    """An input file cannot be read or is not of the expected format."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path, self.row, self.column = path, row, column
        where = ", ".join(
            part
            for part in (
                str(path) if path else "",
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class SchemaError(InputError):
    """A table lacks a required column or a column has the wrong type."""


class ConfigError(GpuwatchError):
    """A settings file, environment variable or flag is invalid."""


class ModelError(GpuwatchError):
    """A model is missing, unreadable, untrusted or does not fit the data."""
