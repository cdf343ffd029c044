"""Models of the webhooks module."""
