"""The tokenization pipeline: sources -> audio preparation -> buckets -> codec -> Parquet, on Ray."""
