"""Interop suite: real third-party SMTP clients against a real postguard server.

A package (unlike ``tests/integration``) so the test modules can share
``interop.harness`` by a plain import. ``conftest.py`` owns the rule for missing
tools (skip locally, fail when ``CI`` is set).
"""
