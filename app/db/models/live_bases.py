"""Models of the live_bases module."""
