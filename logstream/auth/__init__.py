"""API keys for the HTTP API: the key file, the scope grammar, when auth is required."""
