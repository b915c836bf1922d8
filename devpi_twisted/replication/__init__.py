"""Replication: the changelog feed a primary serves, the loop a replica runs (ops.md 6)."""
