"""The feature contract in code: source tables, row normalisation, time, wire format, Redis keys.

Everything here is pure Python (no Kafka, no Redis) and shared by the replay
tool and the stream, so that both read a row the same way. The independent
batch computation in `verify/` deliberately does not use it.
"""
