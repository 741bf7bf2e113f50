"""Command line, configuration and the embedded stack that tie replay, stream and serving together."""
