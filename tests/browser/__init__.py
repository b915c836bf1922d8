"""Tests in a real browser: headless Debian chromium driven by Playwright (issue 22)."""
