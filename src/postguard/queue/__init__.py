"""The queue: durable spool, queue IDs and the manager that drives delivery."""
