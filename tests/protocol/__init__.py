"""Tests for postguard.protocol (a package so module names stay unique across tests/)."""
