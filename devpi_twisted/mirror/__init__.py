"""The PyPI caching mirror: upstream client, page parsing, cache policy."""
