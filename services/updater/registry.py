"""The version registry of internet update mode, over HTTP with a token per component.

The registry speaks two endpoints (``Authorization: Bearer <repository token>``):

* ``GET {registry_url}/v1/components/{component}/versions`` answers
  ``{"versions": [{"version": "2", "sha256": "<hex>", "size_bytes": 123, "description": "..."}]}``;
* ``GET {registry_url}/v1/components/{component}/versions/{version}/image``
  answers the image file (the same format as an upload).
"""
import json
import urllib.error
import urllib.parse
import urllib.request

from shared.errors import RegistryUnavailable

CHUNK = 1 << 16


class Registry:
    def __init__(self, base_url, tokens, timeout_seconds=30.0, opener=urllib.request.urlopen):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens or {}
        self.timeout = timeout_seconds
        self.opener = opener

    def _open(self, component, path):
        token = self.tokens.get(component)
        if not token:
            raise RegistryUnavailable(
                f"no repository token for {component}: set update.repository_tokens.{component} in the settings"
            )
        url = f"{self.base_url}/v1/components/{urllib.parse.quote(component)}/{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            return self.opener(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise RegistryUnavailable(f"the registry refused the {component} repository token ({exc.code})") from None
            raise RegistryUnavailable(f"the registry answered {exc.code} for {url}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(f"cannot reach the registry at {self.base_url}: {reason}") from None

    def versions(self, component):
        with self._open(component, "versions") as response:
            try:
                body = json.load(response)
                return [
                    {"version": str(v["version"]), "sha256": v.get("sha256"), "size_bytes": v.get("size_bytes"),
                     "description": v.get("description")}
                    for v in body["versions"]
                ]
            except (ValueError, KeyError, TypeError):
                raise RegistryUnavailable("the registry's version list is malformed") from None

    def download(self, component, version, target):
        """Stream one image into the open binary file ``target``; returns the bytes written."""
        written = 0
        with self._open(component, f"versions/{urllib.parse.quote(version)}/image") as response:
            while chunk := response.read(CHUNK):
                target.write(chunk)
                written += len(chunk)
        return written
