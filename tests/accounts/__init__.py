"""Tests for postguard.accounts (a package so module names stay unique across tests/)."""
