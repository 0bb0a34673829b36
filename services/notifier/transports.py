"""Sending one rendered message over a channel: SMTP, signed webhook, chat webhook.

Each transport returns a one-line account of what the far end said, or
raises ``DeliveryFailed`` with the reason; the delivery log keeps both.
"""
import json
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import requests
from jinja2 import TemplateError

from services.notifier.exceptions import DeliveryFailed
from services.notifier.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from services.notifier.templates import compile_template

# Short enough that a channel test answers within the gateway's 10 s RPC timeout;
# a slow far end during a real delivery is retried like any other failure.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 6


@dataclass(frozen=True)
class Message:
    delivery_id: int | None  # None for a test message
    subject: str
    body: str
    severity: str = "info"
    events: list = field(default_factory=list)


def send_email(settings, password, message, clock=time.time):
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = settings["sender"]
    email["To"] = ", ".join(settings["recipients"])
    email["Date"] = format_datetime(_utc(clock()))
    # A retry of one delivery keeps its Message-ID, so mail clients can fold duplicates.
    email["Message-ID"] = (f"<steward-delivery-{message.delivery_id}@{settings['sender'].split('@')[-1]}>"
                           if message.delivery_id else make_msgid("steward-test"))
    if message.delivery_id:
        email[DELIVERY_HEADER] = str(message.delivery_id)
    email.set_content(message.body)
    where = f"{settings['host']}:{settings['port']}"
    try:
        with smtplib.SMTP(settings["host"], settings["port"], timeout=READ_TIMEOUT) as smtp:
            if settings.get("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            if settings.get("username"):
                smtp.login(settings["username"], password or "")
            refused = smtp.send_message(email)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP {where}: {_describe(exc)}") from None
    accepted = len(settings["recipients"]) - len(refused)
    if refused:
        return f"SMTP {where} accepted {accepted} recipient(s), refused {', '.join(sorted(refused))}"
    return f"SMTP {where} accepted {accepted} recipient(s)"


def webhook_body(message):
    return json.dumps({
        "delivery_id": message.delivery_id,
        "subject": message.subject,
        "text": message.body,
        "severity": message.severity,
        "events": message.events,
    }, sort_keys=True, default=str).encode()


def send_webhook(settings, secret, message, clock=time.time):
    body = webhook_body(message)
    timestamp = str(int(clock()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(secret, timestamp, body)}
    if message.delivery_id:
        headers[DELIVERY_HEADER] = str(message.delivery_id)
    return _post(settings["url"], body, headers)


def chat_text(message):
    return f"*{message.subject}*\n{message.body}"


def chat_payload(payload_template, text):
    """The chat webhook's JSON body: Slack's ``{"text": ...}`` or the channel's own template."""
    if not payload_template:
        return json.dumps({"text": text}).encode()
    try:
        rendered = compile_template(payload_template).render(text=text)
        payload = json.loads(rendered)
    except (TemplateError, ValueError) as exc:
        raise DeliveryFailed(f"payload_template does not give a JSON object: {exc}") from None
    if not isinstance(payload, dict):
        raise DeliveryFailed("payload_template does not give a JSON object")
    return json.dumps(payload).encode()


def send_chat(settings, url, message, clock=time.time):
    body = chat_payload(settings.get("payload_template"), chat_text(message))
    # The URL holds the chat's credential: name only its host in the log.
    return _post(url, body, {"Content-Type": "application/json"}, shown=requests.utils.urlparse(url).netloc)


def _post(url, body, headers, shown=None):
    shown = shown or url
    try:
        response = requests.post(url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                 allow_redirects=False)
    except requests.RequestException as exc:
        raise DeliveryFailed(f"POST {shown}: {_describe(exc).replace(url, shown)}") from None
    summary = f"POST {shown}: HTTP {response.status_code} {response.text.strip()[:200]}".rstrip()
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(summary)
    return summary


TRANSPORTS = {"email": send_email, "webhook": send_webhook, "chat": send_chat}


def send(kind, settings, secret, message, clock=time.time):
    return TRANSPORTS[kind](settings, secret, message, clock=clock)


def _describe(exc):
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (receiver down or unreachable)"
    if isinstance(exc, (requests.Timeout, socket.timeout)):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]


def _utc(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc)
