"""The ViLMS compiler: load → validate → resolve → render → write."""
