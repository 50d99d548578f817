"""Fixtures that start real servers on loopback (placeholder until the server fixtures land)."""
