"""The HTTP layer: Klein routes, rendering and content negotiation."""
