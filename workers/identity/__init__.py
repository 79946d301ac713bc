"""The identity API (HTTP) and its command line."""
