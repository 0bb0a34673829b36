"""The version registry of internet update mode, over HTTP with a token per component.

The registry speaks two endpoints (``Authorization: Bearer <repository token>``):

* ``GET {registry_url}/v1/components/{component}/versions`` answers
  ``{"versions": [{"version": "2", "sha256": "<hex>", "size_bytes": 123, "description": "..."}]}``;
* ``GET {registry_url}/v1/components/{component}/versions/{version}/image``
  answers the image file (the same format as an upload).
"""
from urllib.parse import quote

import requests

from shared.errors import RegistryUnavailable

CHUNK = 1 << 16


class Registry:
    def __init__(self, base_url, tokens, timeout_seconds=30.0):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens or {}
        self.timeout = timeout_seconds

    def _open(self, component, path):
        """The registry's streamed answer to GET <path> of ``component`` (close it after use)."""
        token = self.tokens.get(component)
        url = f"{self.base_url}/v1/components/{quote(component, safe='')}/{path}"
        # Without a token the request goes out without one: a registry may serve its versions to anyone.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = requests.get(url, headers=headers, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise RegistryUnavailable(f"cannot reach the registry at {self.base_url}: {exc}") from None
        if response.status_code in (401, 403):
            response.close()
            if not token:
                raise RegistryUnavailable(f"the registry wants a token for {component} ({response.status_code}): "
                                          f"set update.repository_tokens.{component} in the settings")
            raise RegistryUnavailable(f"the registry refused the {component} repository token ({response.status_code})")
        if response.status_code >= 400:
            response.close()
            raise RegistryUnavailable(f"the registry answered {response.status_code} for {url}")
        return response

    def versions(self, component):
        with self._open(component, "versions") as response:
            try:
                body = response.json()
                return [
                    {"version": str(v["version"]), "sha256": v.get("sha256"), "size_bytes": v.get("size_bytes"),
                     "description": v.get("description")}
                    for v in body["versions"]
                ]
            except (ValueError, KeyError, TypeError):
                raise RegistryUnavailable("the registry's version list is malformed") from None
            except requests.RequestException as exc:
                raise RegistryUnavailable(f"the registry's version list was cut short: {exc}") from None

    def download(self, component, version, target):
        """Stream one image into the open binary file ``target``; returns the bytes written."""
        written = 0
        with self._open(component, f"versions/{quote(version, safe='')}/image") as response:
            try:
                for chunk in response.iter_content(CHUNK):
                    target.write(chunk)
                    written += len(chunk)
            except requests.RequestException as exc:
                raise RegistryUnavailable(f"the {component} {version} image download broke off: {exc}") from None
        return written
