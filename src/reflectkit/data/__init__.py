"""Dataset I/O: readers/writers for JSONL, JSON arrays, Parquet and CSV; Alpaca, chat and ShareGPT shapes."""

from reflectkit.data.record import Record, row_id
from reflectkit.data.io import Dataset, BadRow, read_dataset, write_dataset, parse_mapping

__all__ = ["Record", "row_id", "Dataset", "BadRow", "read_dataset", "write_dataset", "parse_mapping"]
