"""Shared test helpers (engine drivers, dialogues, loopback fakes); imported as ``helpers``."""
