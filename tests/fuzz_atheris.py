"""Coverage-guided fuzzing of one reader with atheris (libFuzzer), beside tests/fuzz_run.py.

The property is tests/test_fuzz.py's `check_reader`; the corpus starts from the reader's seed.
Any exception but a clean `GpuwatchError` stops the run, libFuzzer saves the input
(crash-<sha1>) and exits non-zero. Needs `pip install atheris` (a wheel bundling libFuzzer).

    python tests/fuzz_atheris.py READER CORPUS_DIR -max_total_time=60 [libFuzzer flags]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["detector"]):
    import detector.ingest  # noqa: F401 - instrumented: coverage guides the mutations

import test_fuzz


def main() -> None:
    reader, corpus = sys.argv[1], Path(sys.argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "seed").write_bytes(test_fuzz.READERS[reader][3])
    logging.disable(logging.CRITICAL)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], lambda data: test_fuzz.check_reader(reader, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
