"""The progress line: it moves from the last stage's first batch, its total counts inputs (not the
sidecars beside them), and a log does not get the same line twice."""
import io

from pixcap.pipeline.progress import PARTS_READ_BYTES, PARTS_READ_INPUTS, Progress

STAGES = ("read", "decode", "caption", "nouns", "clip")


def progress(part_bytes: int = 2000) -> Progress:
    return Progress(counter=None, parts=2, part_bytes=part_bytes, every_seconds=1, stall_seconds=60,
                    stream=io.StringIO(), stages=STAGES)


def test_no_total_until_a_part_is_read_through_then_inputs_per_byte_of_the_parts_read():
    p = progress()
    # 12 images read of a tar whose JSON sidecars are as big as its images: bytes read say nothing yet.
    p.counts = {"read": 12, "read_bytes": 500}
    assert p.estimate() == (None, None)
    p.counts = {"read": 12, "read_bytes": 500, PARTS_READ_BYTES: 1000, PARTS_READ_INPUTS: 12}
    expected, _ = p.estimate()
    assert expected == 24  # 12 inputs for 1000 bytes; 1000 bytes to go


def test_done_counts_the_last_stage_before_any_commit_and_gives_an_eta():
    p = progress()
    p.counts = {"read": 24, "decode": 24, "caption": 8, "nouns": 8, "clip": 6,
                PARTS_READ_BYTES: 2000, PARTS_READ_INPUTS: 24}
    assert p.done() == 6
    expected, left = p.estimate()
    assert expected == 24 and left is not None and left > 0
    line = p.line()
    assert "inputs 6/~24 done, 0 committed" in line and "clip 6" in line and "ETA" in line
    p.committed.written, p.committed.rejected = 7, 1  # committed ahead of the counter's last report
    assert p.done() == 8


def test_a_log_gets_a_line_when_something_moved_and_not_the_same_line_again():
    p = progress()
    p.counts = {"read": 3}
    p._show()
    p._show()
    p.counts = {"read": 5}
    p._show()
    lines = p.stream.getvalue().splitlines()
    assert len(lines) == 2 and "read 3" in lines[0] and "read 5" in lines[1]
