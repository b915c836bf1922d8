"""Delivery of webhooks from the outbox (model/hooks.py has the rules)."""
