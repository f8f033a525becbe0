"""Experiments users run; each returns its results as plain data and writes JSON/CSV/PNG."""
