"""Console sign-in: a session token in an HttpOnly, SameSite=Strict cookie, and the CSRF token that every change
made with that cookie must echo in ``X-CSRF-Token``. The API's bearer tokens work as before."""
import hashlib
import hmac

import falcon

from gateway.resources import json_body, principal
from shared.crypto import API_TOKEN, token_hash
from shared.schemas.identity import Session as SessionSchema

COOKIE = "steward_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def csrf_token(session_token):
    """Derived from the session's secret, so only a page that could read the session answer knows it."""
    return hashlib.sha256(b"csrf:" + session_token.encode()).hexdigest()


def csrf_matches(session_token, sent):
    return bool(sent) and hmac.compare_digest(csrf_token(session_token), sent)


def client_of(req, client_address):
    """Whom the sign-in limit counts per address: the peer, or behind a trusted proxy the client it names
    (gateway/client_address.py)."""
    return client_address.of(req.remote_addr, req.get_header("X-Forwarded-For"))


class Session:
    def __init__(self, inventory, secret_box, client_address, session_seconds=43200):
        self.inventory = inventory
        self.client_address = client_address
        self.secret_box = secret_box  # opens the session's token, which inventory hands over sealed
        self.seconds = session_seconds

    def on_post(self, req, resp):
        """Sign in with a user name and password."""
        session = self.inventory.sign_in(json_body(req), self.seconds, client_of(req, self.client_address))
        token = self.secret_box.open_sealed(API_TOKEN, session["token"])
        resp.set_cookie(COOKIE, token, max_age=self.seconds, path="/", http_only=True,
                        same_site="Strict", secure=req.forwarded_scheme == "https")
        resp.media = {"user": session["user"], "csrf_token": csrf_token(token), "expires_at": session["expires_at"]}

    def on_get(self, req, resp):
        """Who is signed in (or whose bearer token this is)."""
        token = req.context.get("session_token")
        # The documented answer only: a token's scope and server stay the gateway's business.
        resp.media = SessionSchema().dump({"user": principal(req), "csrf_token": csrf_token(token) if token else None})

    def on_delete(self, req, resp):
        """Sign out: the session's token is revoked and the cookie dropped."""
        token = req.context.get("session_token")
        if token:
            self.inventory.sign_out(token_hash(token))
        resp.unset_cookie(COOKIE, path="/")
        resp.status = falcon.HTTP_204


class PasswordChange:
    def __init__(self, inventory, client_address):
        self.inventory = inventory
        self.client_address = client_address

    def on_post(self, req, resp):
        """The signed-in user's own password, given the current one; their other console sessions end."""
        token = req.context.get("session_token")
        resp.media = self.inventory.change_password(principal(req), json_body(req), client_of(req, self.client_address),
                                                    token_hash(token) if token else None)
