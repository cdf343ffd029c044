"""Models of the task_orders module."""
