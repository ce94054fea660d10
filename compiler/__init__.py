"""The ViLMS compiler: load → validate → resolve → render → write."""

__version__ = "0.1.0"
