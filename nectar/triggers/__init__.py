"""Data triggers: a task run for each object that lands under a prefix of a store, each object claimed once."""
