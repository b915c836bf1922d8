"""Export and import in devpi-server 6's dump format (spec/ops.md 2.3, 4)."""
