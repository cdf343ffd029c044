"""Rules and services of the outreach module."""
