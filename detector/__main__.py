"""`gpuwatch` and `python -m detector`: the command line, with Ctrl-C covered from the start.

Importing the command line takes a moment; a Ctrl-C during it ends the run with exit code 130
and one line, as it does later (`detector.cli`), not with a traceback.
"""

from __future__ import annotations

import signal
import sys

from detector.errors import EXIT_INTERRUPTED


def main() -> None:
    try:
        from detector.cli import main as command

        command()  # exits with the command's code; handles Ctrl-C itself once running
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("Error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
