"""Tests for postguard.config (a package so module names stay unique across tests/)."""
