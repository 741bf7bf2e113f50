"""Faust, Kafka and Redis plumbing around the pure logic in `stream.logic`."""
