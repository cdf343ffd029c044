"""Models of the outreach module."""
