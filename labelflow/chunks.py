"""Rows a chunk at a time: a frame sliced, or a lazy frame (a project's Parquet files) read in pieces.

The applier, the engines, the vote cache's data hashes and the FM runs all walk rows so,
and memory stays bounded however many rows there are.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl


def chunk_bounds(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` of ``n`` rows."""
    for start in range(0, n, size):
        yield start, min(start + size, n)


def read_chunk(rows: pl.DataFrame | pl.LazyFrame, start: int, stop: int) -> pl.DataFrame:
    """Rows ``start .. stop-1`` of a frame (a zero-copy slice) or a lazy frame (read from its source)."""
    part = rows.slice(start, stop - start)
    return part.collect() if isinstance(part, pl.LazyFrame) else part


def row_count(rows: pl.DataFrame | pl.LazyFrame) -> int:
    """The number of rows of a frame, or of a lazy frame (counted from its source without reading its columns)."""
    return rows.height if isinstance(rows, pl.DataFrame) else rows.select(pl.len()).collect().item()
