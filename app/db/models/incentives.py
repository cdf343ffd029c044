"""Models of the incentives module."""
