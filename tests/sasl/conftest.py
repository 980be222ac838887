"""Hypothesis profiles for the SASL tests, the same as ``tests/protocol/conftest.py``.

Registered here too so ``pytest tests/sasl`` alone gets them: ``dev`` (default, quick) and
``ci`` (many more examples), chosen by ``HYPOTHESIS_PROFILE``. Deadlines are off: speed is
not under test, and a slow CI machine must not turn into a flaky failure.
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
