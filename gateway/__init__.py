"""The public API: a Falcon app under gunicorn, talking RPC to the services."""
