import swagger_ui_bundle

from gateway.openapi import build_spec

SWAGGER_STATIC = swagger_ui_bundle.swagger_ui_path

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Steward API</title>
  <link rel="stylesheet" href="/api/v2/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/v2/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/v2/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


class OpenAPIDocument:
    public = True

    def __init__(self, operations):
        self.document = build_spec(operations)

    def on_get(self, req, resp):
        resp.media = self.document


class SwaggerPage:
    public = True

    def on_get(self, req, resp):
        resp.content_type = "text/html; charset=utf-8"
        resp.text = PAGE
