"""The domain layer: index rules as plain Python, free of HTTP and of Twisted."""
