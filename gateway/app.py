"""``create_app(settings)`` builds the API from what it is given; ``get_app()`` is gunicorn's entry."""
import falcon

from gateway import errors
from gateway.middleware import Authentication, PrincipalCache, RequestContext
from gateway.resources.docs import SWAGGER_STATIC, OpenAPIDocument, SwaggerPage
from gateway.resources.health import Health
from gateway.resources.identity import TokenCollection, TokenItem, UserCollection, UserItem
from gateway.resources import monitoring as monitoring_resources
from gateway.resources import notifier as notifications
from gateway.resources import updater as updates
from gateway.resources import provisioner as provisioning
from gateway.resources import tasks
from gateway.resources.servers import ServerCollection, ServerItem
from gateway.resources.settings import RabbitMQTest, Settings
from gateway.routes import OPERATIONS, PREFIX
from shared.config import SERVICES, load_settings
from shared.logs import configure_logging
from shared.publisher import ConfirmedPublisher
from shared.rpc import RpcClient
from shared.schemas.agent import EXCHANGE as AGENT_EXCHANGE
from shared.schemas.updater import storage_dir as image_storage_dir


def create_app(settings, rpc=None, agent_publisher=None):
    options = settings.section("gateway")
    rpc = rpc or RpcClient(settings.amqp_uri, timeout=float(options.get("rpc_timeout_seconds", 10)))
    inventory = rpc.service("inventory")
    monitoring = rpc.service("monitoring_ingest")
    cache = PrincipalCache(float(options.get("auth_cache_seconds", 10)))

    app = falcon.App(middleware=[RequestContext(), Authentication(inventory.authenticate, cache)])
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    app.add_route(f"{PREFIX}/servers",
                  ServerCollection(inventory, monitoring, float(options.get("fleet_status_cache_seconds", 2))))
    provisioner = rpc.service("provisioner")
    # DELETE removes what was installed on the server first (best effort), then the record.
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}", provisioning.ServerItemWithCleanup(inventory, provisioner, monitoring))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/bundle", provisioning.Bundle(provisioner))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/actions/push-install", provisioning.PushInstall(provisioner))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/host-key", provisioning.HostKey(provisioner))
    app.add_route(f"{PREFIX}/tasks/{{task_id}}", tasks.TaskItem(provisioner))
    app.add_route(f"{PREFIX}/tasks/{{task_id}}/log", tasks.TaskLog(provisioner))
    app.add_route(f"{PREFIX}/settings", Settings(inventory))
    app.add_route(f"{PREFIX}/settings/rabbitmq/test", RabbitMQTest(inventory))
    app.add_route(f"{PREFIX}/users", UserCollection(inventory))
    app.add_route(f"{PREFIX}/users/{{user_id:int}}", UserItem(inventory))
    app.add_route(f"{PREFIX}/tokens", TokenCollection(inventory))
    app.add_route(f"{PREFIX}/tokens/{{token_id:int}}", TokenItem(inventory))

    notifier = rpc.service("notifier")
    app.add_route(f"{PREFIX}/notifications/channels", notifications.ChannelCollection(notifier))
    app.add_route(f"{PREFIX}/notifications/channels/{{channel_id:int}}", notifications.ChannelItem(notifier))
    app.add_route(f"{PREFIX}/notifications/channels/{{channel_id:int}}/test", notifications.ChannelTest(notifier))
    app.add_route(f"{PREFIX}/notifications/rules", notifications.RuleCollection(notifier))
    app.add_route(f"{PREFIX}/notifications/rules/{{rule_id:int}}", notifications.RuleItem(notifier))
    app.add_route(f"{PREFIX}/notifications/templates", notifications.TemplateCollection(notifier))
    app.add_route(f"{PREFIX}/notifications/templates/{{template_id:int}}", notifications.TemplateItem(notifier))
    app.add_route(f"{PREFIX}/notifications/deliveries", notifications.DeliveryCollection(notifier))
    app.add_route(f"{PREFIX}/notifications/deliveries/{{delivery_id:int}}", notifications.DeliveryItem(notifier))
    app.add_route(f"{PREFIX}/notifications/deliveries/{{delivery_id:int}}/retry", notifications.DeliveryRetry(notifier))

    agent_publisher = agent_publisher or ConfirmedPublisher(settings.amqp_uri, AGENT_EXCHANGE)
    app.add_route(f"{PREFIX}/monitoring/heartbeat", monitoring_resources.HeartbeatCollection(agent_publisher))
    monitoring_server = f"{PREFIX}/monitoring/servers/{{server_id:int}}"
    app.add_route(f"{monitoring_server}/system", monitoring_resources.ServerSystem(monitoring))
    app.add_route(f"{monitoring_server}/dns", monitoring_resources.ServerDns(monitoring))
    app.add_route(f"{monitoring_server}/records", monitoring_resources.ServerRecords(monitoring))
    app.add_route(f"{monitoring_server}/heartbeats", monitoring_resources.ServerLiveness(monitoring))
    app.add_route(f"{monitoring_server}/retention", monitoring_resources.ServerRetention(monitoring))
    app.add_route(f"{PREFIX}/monitoring/records/rps", monitoring_resources.RecordRps(monitoring))

    updater = rpc.service("updater")
    spool = updates.ImageSpool(image_storage_dir(settings), int(settings.section("updater").get("max_image_bytes", 1 << 29)))
    app.add_route(f"{PREFIX}/versions", updates.VersionCollection(updater, spool))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/actions/push-update", updates.PushUpdate(updater))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/update-tasks", updates.ServerUpdateTasks(updater))
    app.add_route(f"{PREFIX}/update-tasks/{{task_id}}", updates.UpdateTaskItem(updater))
    app.add_route(f"{PREFIX}/update-tasks/{{task_id}}/log", updates.UpdateTaskLog(updater))
    app.add_route(f"{PREFIX}/rollouts", updates.RolloutCollection(updater))
    app.add_route(f"{PREFIX}/rollouts/{{rollout_id:int}}", updates.RolloutItem(updater))
    app.add_route(f"{PREFIX}/rollouts/{{rollout_id:int}}/actions/resume", updates.RolloutAction(updater, "resume"))
    app.add_route(f"{PREFIX}/rollouts/{{rollout_id:int}}/actions/cancel", updates.RolloutAction(updater, "cancel"))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/actions/diagnostics", updates.Diagnostics(updater))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/diagnostics/{{run_id}}", updates.DiagnosticsItem(updater))
    app.add_route(f"{PREFIX}/servers/{{server_id:int}}/diagnostics/{{run_id}}/log", updates.DiagnosticsLog(updater))

    app.add_route(f"{PREFIX}/openapi.json", OpenAPIDocument(OPERATIONS))
    app.add_route(f"{PREFIX}/docs", SwaggerPage())
    app.add_static_route(f"{PREFIX}/docs/static", SWAGGER_STATIC)
    app.add_route("/healthz", Health(settings.amqp_uri, rpc, list(SERVICES)))
    return app


def get_app():
    settings = load_settings()
    configure_logging("gateway", settings.get("LOG_LEVEL", "INFO"))
    return create_app(settings)
