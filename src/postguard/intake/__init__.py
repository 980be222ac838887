"""Intake: Received (and Message-ID/Date for submissions), then commit to the queue before
250 (cleanup(8))."""
