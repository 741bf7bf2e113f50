"""Readers of source tables: CSV folders and database URLs, yielding normalised rows."""
