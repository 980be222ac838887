"""Tests for postguard.accounts.oauth (a package so module names stay unique across tests/)."""
