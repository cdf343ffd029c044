"""Rules and services of the incentives module."""
