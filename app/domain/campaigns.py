"""Rules and services of the campaigns module."""
