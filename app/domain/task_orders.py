"""Rules and services of the task orders module."""
