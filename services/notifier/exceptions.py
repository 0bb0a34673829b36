"""The notifier's own errors; those that reach the API are typed in shared.errors."""


class DeliveryFailed(Exception):
    """The far end (SMTP server, webhook, chat) refused a message or could not be reached; the message says which."""
