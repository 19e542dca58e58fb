"""The write stage: a batch as a fragment table; a row the table cannot hold is a reject row."""
from pixcap.schemas import batch as B
from pixcap.schemas import rejects as R
from pixcap.schemas.fragments import FRAGMENT_SCHEMA
from pixcap.schemas.records import CAPTION, WIDTH
from pixcap.stages.write import fragment_table


def batch_of(n: int) -> dict:
    batch = {field.name: [None] * n for field in FRAGMENT_SCHEMA}
    batch.update({B.SHARD: ["p-00000"] * n, B.INDEX: list(range(n)), B.KEY: [f"k{i}" for i in range(n)],
                  B.SOURCE: [f"in.tar::k{i}.jpg" for i in range(n)], B.REJECT_STAGE: [""] * n,
                  B.REJECT_REASON: [""] * n, B.REJECT_ERROR: [""] * n, CAPTION: [f"caption {i}" for i in range(n)],
                  WIDTH: [64] * n})
    for column in B.LEDGER_COLUMNS:
        if batch[column][0] is None:
            batch[column] = [0] * n
    return batch


def test_a_row_whose_value_the_table_cannot_hold_is_a_write_error_and_the_others_are_written():
    batch = batch_of(3)
    batch[WIDTH][1] = 2**40  # no int32
    table = fragment_table(batch)
    assert table.column(B.REJECT_REASON).to_pylist() == ["", R.WRITE_ERROR, ""]
    assert table.column(B.REJECT_STAGE).to_pylist()[1] == "write"
    assert table.column(CAPTION).to_pylist() == ["caption 0", None, "caption 2"]  # a reject keeps no data
    assert table.column(WIDTH).to_pylist() == [64, None, 64]


def test_a_batch_that_fits_is_written_whole():
    table = fragment_table(batch_of(2))
    assert table.num_rows == 2 and table.column(B.REJECT_REASON).to_pylist() == ["", ""]


def test_a_value_that_cannot_be_converted_costs_its_row_only():
    batch = batch_of(3)
    batch[WIDTH][2] = "not a number"  # int() refuses it before Arrow sees it
    table = fragment_table(batch)
    assert table.column(B.REJECT_REASON).to_pylist() == ["", "", R.WRITE_ERROR]
    assert table.column(WIDTH).to_pylist() == [64, 64, None]
