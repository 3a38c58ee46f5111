"""supervise: a Linux container supervisor on trio, with a built-in log aggregation bus."""

__version__ = "0.1.0"
