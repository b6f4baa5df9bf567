"""Data triggers, listings under a prefix and batches from one."""
