"""Memory figures of `pixcap run` (20,000 images, and the compressed bomb) and `pixcap stats`
(1,000,000 rows): the bounded-memory tests measure them, so this runs those tests and shows
what they print, rather than keeping a second copy of the measuring code.

    python -m bench.bench_memory [run|stats|bomb|all]
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELECTION = {
    "run": "many_images or does_not_grow or commit_while",
    "stats": "stats",
    "bomb": "bomb",
    "all": "",
}


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which not in SELECTION:
        print(f"usage: python -m bench.bench_memory [{'|'.join(SELECTION)}]", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pytest", "tests/pipeline/test_memory.py", "-s", "-q", "-p", "no:cacheprovider"]
    if SELECTION[which]:
        command += ["-k", SELECTION[which]]
    # The 20,000-image run the README's figures are from; `make test` runs the same checks on fewer.
    env = {"PIXCAP_MEMORY_IMAGES": "20000", **os.environ}
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
