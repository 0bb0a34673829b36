"""The Steward agent: runs on a managed server, standard library + pika only (Python 3.8+)."""

AGENT_VERSION = "1.0.0"
PROTOCOL_VERSION = 1
