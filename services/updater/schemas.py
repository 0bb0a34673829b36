"""The updater's own schemas (its API's are in shared/schemas/updater.py, shared with the gateway)."""
from marshmallow import INCLUDE, Schema, fields, validate

from shared.components import INSTALLABLE
from shared.schemas.updater import VERSION

IMAGE_FORMAT = 1


class ImageManifest(Schema):
    """An image's manifest.json (services/updater/images.py)."""

    class Meta:
        unknown = INCLUDE  # a newer manifest may say more

    format = fields.Integer(required=True, validate=validate.Equal(IMAGE_FORMAT))
    component = fields.String(required=True, validate=validate.OneOf(INSTALLABLE))
    version = fields.String(required=True, validate=VERSION)
    description = fields.String(allow_none=True)


# What an operator reads when a manifest field is missing or wrong: the words pv_update.py uses on the server.
MANIFEST_PROBLEMS = {
    "format": f"format must be {IMAGE_FORMAT}",
    "component": f"component must be one of {', '.join(INSTALLABLE)}",
    "version": "version must be a string like 2.10 or 3.2.6-1",
    "description": "description must be a string",
}
