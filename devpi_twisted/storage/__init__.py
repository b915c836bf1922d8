"""Storage adapters behind one Deferred-returning interface (interface.py)."""
