"""Intake: Received/Message-ID, then commit to the queue before 250 (cleanup(8))."""
