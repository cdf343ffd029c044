"""Models of the campaigns module."""
