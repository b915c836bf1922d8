"""The HTTP layer: the route table (routes.py), the apps answering it (composed in
compose.py), dispatch through Klein, rendering and content negotiation."""
