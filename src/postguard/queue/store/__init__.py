"""Queue storage back ends behind the QueueStore protocol (base.py)."""
