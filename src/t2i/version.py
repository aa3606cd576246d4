"""The version of t2i, recorded in every pipeline folder it writes."""

__version__ = "0.1.0"
