"""The analyst tools: read the parquet statistics an output holds."""
