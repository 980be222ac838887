"""The delivery-agent skeleton in docs/ is callable the way the queue manager calls agents."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from postguard.delivery.base import Delivered

SKELETON = Path(__file__).resolve().parents[2] / "docs" / "skeletons" / "delivery_agent.py"


def test_the_skeleton_takes_the_managers_call() -> None:
    spec = importlib.util.spec_from_file_location("delivery_agent_skeleton", SKELETON)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    agent = module.ExampleAgent()
    outcome = agent.deliver(b"Subject: x\r\n\r\n", ["bob@example.org"], reverse_path="")
    assert outcome == {"bob@example.org": Delivered()}
