"""Runnable recipes built on keras_nc (run each with `python -m recipes.<name>`)."""
