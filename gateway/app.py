"""``create_app(settings)`` builds the API from what it is given; ``get_app()`` is gunicorn's entry."""
import inspect

import falcon

from gateway import errors
from gateway.auth_cache import AgentTokenCopy, PrincipalCache, RevocationFeed
from gateway.middleware import Authentication, OperationContext, RequestContext, ResponseHeaders
from gateway.asyncapi import build_asyncapi
from gateway.client_address import ClientAddress, parse_trusted
from gateway.openapi import build_spec
from gateway.resources.console import CONSOLE_DIR, STATIC_PREFIX, VENDOR
from gateway.resources.docs import SWAGGER_STATIC
from gateway.resources.health import HealthProbe
from gateway.resources.updater import ImageSpool
from gateway.resources import json_loads
from gateway.routes import CONVERTERS, OPERATIONS, PREFIX, routes
from shared.config import load_settings, registered_services
from shared.crypto import SecretBox
from shared.logs import configure_logging
from shared.publisher import ConfirmedPublisher
from shared.rpc import RpcClient, timeout_of
from shared.schemas.agent import EXCHANGE as AGENT_EXCHANGE, HEARTBEAT_QUEUE, STATS_QUEUE
from shared.schemas.updater import storage_dir as image_storage_dir


def rpc_client(settings):
    """The gateway's RPC client: at most ``gateway.calls_per_service`` calls of this process wait on one
    service, so a hung service takes its share of the threads, not all of them (0: no bound)."""
    bound = int(settings.section("gateway").get("calls_per_service", 3))
    return RpcClient(settings.amqp_uri, timeout=timeout_of(settings), calls_per_service=bound or None)


def create_app(settings, rpc=None, agent_publisher=None, services=None, health_probe=None, revocation_feed=None,
               agent_copy=None):
    """The API. ``services``: those /healthz expects running (default: every registered one)."""
    options = settings.section("gateway")
    rpc = rpc or rpc_client(settings)
    services = list(registered_services()) if services is None else list(services)
    # What resources are built with, by the names of their constructors' parameters.
    collaborators = {
        "inventory": rpc.service("inventory"),
        "provisioner": rpc.service("provisioner"),
        "monitoring": rpc.service("monitoring_ingest"),
        "updater": rpc.service("updater"),
        "notifier": rpc.service("notifier"),
        "backup": rpc.service("backup"),
        "agent_publisher": agent_publisher or ConfirmedPublisher(settings.amqp_uri, AGENT_EXCHANGE),
        "image_spool": ImageSpool(image_storage_dir(settings),
                                  int(settings.section("updater").get("max_image_bytes", 1 << 29))),
        "fleet_status_cache_seconds": float(options.get("fleet_status_cache_seconds", 2)),
        "fleet_status_fresh_seconds": float(options.get("fleet_status_fresh_seconds", 0.5)),
        "session_seconds": int(options.get("session_seconds", 43200)),
        "client_address": ClientAddress(parse_trusted(options.get("trusted_proxies"))),
        "openapi_document": build_spec(OPERATIONS),
        "asyncapi_document": build_asyncapi(),
        "api_prefix": PREFIX,
        "amqp_uri": settings.amqp_uri,
        "rpc": rpc,
        "secret_box": SecretBox(settings.secret_key),  # opens what replies carry sealed: new tokens, setup bundles
        "services": services,
        "health_probe": health_probe or HealthProbe(settings.amqp_uri, services, (STATS_QUEUE, HEARTBEAT_QUEUE),
                                    interval=float(options.get("health_interval_seconds", 5)),
                                    max_backlog_seconds=float(options.get("health_max_backlog_seconds", 120))),
    }
    agent_ttl = float(options.get("agent_auth_cache_seconds", 300))
    cache = PrincipalCache(float(options.get("auth_cache_seconds", 10)), agent_ttl_seconds=agent_ttl,
                           feed=revocation_feed or RevocationFeed(settings),
                           agent_copy=agent_copy or AgentTokenCopy(collaborators["inventory"], agent_ttl / 2))

    app = falcon.App(middleware=[
        RequestContext(),
        ResponseHeaders(OPERATIONS, (f"{PREFIX}/docs/static", "/console/")),
        OperationContext(OPERATIONS, collaborators["secret_box"]),
        Authentication(collaborators["inventory"].authenticate, cache, OPERATIONS),
    ])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(loads=json_loads)
    app.router_options.converters.update(CONVERTERS)
    errors.install(app)
    for uri_template, resource_class in routes(OPERATIONS):
        app.add_route(uri_template, _build(resource_class, collaborators))
    app.add_static_route(f"{PREFIX}/docs/static", SWAGGER_STATIC)  # Swagger UI's files: a directory, not an operation
    app.add_static_route(STATIC_PREFIX, CONSOLE_DIR)  # the console's own scripts and styles
    for name, directory in VENDOR.items():
        if directory.is_dir():  # npm ci (make install) put it there; the API works without it
            app.add_static_route(f"/console/vendor/{name}", directory)
    return app


def _build(resource_class, collaborators):
    arguments = {}
    for name, parameter in inspect.signature(resource_class).parameters.items():
        if name in collaborators:
            arguments[name] = collaborators[name]
        elif parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{resource_class.__name__} wants {name!r}, which create_app does not provide")
    resource = resource_class(**arguments)
    if hasattr(resource, "on_get") and not hasattr(resource, "on_head"):
        resource.on_head = resource.on_get  # HEAD works where GET does; Falcon sends the headers without the body
    return resource


def get_app():
    settings = load_settings()
    configure_logging(settings, "gateway")
    return create_app(settings)
