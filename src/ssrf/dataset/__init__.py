"""Frames -> ids -> splits -> padded arrays -> batches. Polars stops here."""
