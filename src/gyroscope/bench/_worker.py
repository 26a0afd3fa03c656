"""``python -m gyroscope.bench._worker FD``: one load-generator worker process (see ``_runner``)."""

from __future__ import annotations

import sys

from gyroscope.bench._runner import worker_main

if __name__ == "__main__":
    worker_main(int(sys.argv[1]))
