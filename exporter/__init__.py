"""Prometheus exporter for SeekrFlow file-conversion (ingestion) jobs."""

__version__ = "0.1.0"
