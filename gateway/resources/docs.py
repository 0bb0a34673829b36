"""The OpenAPI document (gateway/openapi.py builds it), Swagger UI's page for it, and the AsyncAPI document of
the events (gateway/asyncapi.py)."""
import base64
import hashlib

import swagger_ui_bundle

SWAGGER_STATIC = swagger_ui_bundle.swagger_ui_path

# No validator: Swagger UI would send the document to validator.swagger.io, off this machine.
SCRIPT = """window.ui = SwaggerUIBundle({{url: "{prefix}/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                       validatorUrl: null}});"""
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Steward API</title>
  <link rel="stylesheet" href="{prefix}/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{prefix}/docs/static/swagger-ui-bundle.js"></script>
  <script>{script}</script>
</body>
</html>
"""


def content_security_policy(script):
    """Scripts from here and the page's one inline script (by its hash), nothing framing the page."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (f"default-src 'self'; script-src 'self' 'sha256-{digest}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class OpenAPIDocument:
    def __init__(self, openapi_document):
        self.document = openapi_document

    def on_get(self, req, resp):
        resp.media = self.document


class AsyncAPIDocument:
    def __init__(self, asyncapi_document):
        self.document = asyncapi_document

    def on_get(self, req, resp):
        resp.media = self.document


class SwaggerPage:
    def __init__(self, api_prefix):
        script = SCRIPT.format(prefix=api_prefix)
        self.page = PAGE.format(prefix=api_prefix, script=script)
        self.policy = content_security_policy(script)

    def on_get(self, req, resp):
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", self.policy)
        resp.set_header("X-Frame-Options", "DENY")
        resp.text = self.page
