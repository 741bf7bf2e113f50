"""The feature contract in code: what a dataset is, source tables, row normalisation, time, wire format,
Redis keys.

Everything here is pure Python (no Kafka, no Redis) and shared by the replay
tool and the stream, so that both read a row the same way. Each dataset's
independent batch computation (`datasets/*/batch.py`) deliberately does not
use it.
"""
