"""transformer-mt: an English→French Transformer trained from scratch, end to end."""

__version__ = "0.1.0"
