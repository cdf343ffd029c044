"""Rules and services of the live bases module."""
