"""Tests for postguard.cli (a package so module names stay unique across tests/)."""
