"""`pixcap report` on 1,000,000 synthetic stats rows: a small file, and a peak RSS that does not
grow with the rows or the files, measured the way tests/pipeline/test_memory.py measures `pixcap stats`.

Measured on 2 cores: 1,000,000 rows in 1000 files (shards of 1000, as `pixcap run` writes them)
take about 7 s and peak at about 240 MiB, the same as 250,000 rows in 250 files; the report is
0.5 MB (it grows by one shard-table row per shard). About 130 MiB of the peak is the interpreter
with pyarrow and matplotlib imported.
"""
import subprocess
import sys
import time

import pytest

from tests.pipeline.test_memory import MIB, PEAK_OF

pytestmark = pytest.mark.slow

REPORT_PEAK_BOUND = 384 * MIB
REPORT_GROWTH_BOUND = 32 * MIB  # 4x the rows and files may add this much
REPORT_SIZE_BOUND = 5_000_000  # bytes; "well under 20 MB" at a million samples


def run_report_measured(out, timeout: float = 600) -> tuple:
    """`pixcap report OUT` in a subprocess; returns (report bytes, peak RSS in bytes, seconds)."""
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", PEAK_OF, str(out / "report.peak"), "-m", "pixcap.cli.main",
                            "report", str(out), "--output", str(out / "report.html")],
                           capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    assert child.returncode == 0, child.stderr[-3000:]
    return (out / "report.html").stat().st_size, int((out / "report.peak").read_text()), seconds


def test_report_on_a_million_rows_is_small_and_its_memory_flat(synthetic_stats):
    figures = {}
    for rows in (250_000, 1_000_000):
        out, _ = synthetic_stats(rows, rows // 1000, seed=rows)  # shared with test_memory.py's `pixcap stats`
        figures[rows] = run_report_measured(out)
    print("pixcap report (bytes, peak RSS MiB, seconds):",
          {rows: (size, round(peak / MIB), round(seconds, 1)) for rows, (size, peak, seconds) in figures.items()})
    size, peak, _ = figures[1_000_000]
    assert size < REPORT_SIZE_BOUND
    assert peak < REPORT_PEAK_BOUND, f"pixcap report peaked at {peak / MIB:.0f} MiB"
    assert peak < figures[250_000][1] + REPORT_GROWTH_BOUND, figures
