"""Tests for postguard.sasl (a package so module names stay unique across tests/)."""
