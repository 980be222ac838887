"""Hypothesis profiles for the protocol tests (STYLE.md §8, as in aiosmtplib).

``dev`` (the default) runs few examples so the suite stays quick; ``ci`` runs
many more. Select one with the environment variable ``HYPOTHESIS_PROFILE``:

    HYPOTHESIS_PROFILE=ci python -m pytest tests/protocol

Deadlines are off in both: the engine's speed is not under test (bench/ is for
that), and a slow CI machine must not turn into a flaky failure.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile(
    "ci",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
