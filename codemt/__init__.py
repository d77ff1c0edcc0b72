"""codemt: multi-mode translation between Python code and natural language (an open PyMT5)."""

__version__ = "0.1.0"
