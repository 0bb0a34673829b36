"""Every public operation, declared once: the app routes from it and the
OpenAPI document is generated from it, with the same schemas that validate."""
from dataclasses import dataclass, field

from shared.schemas import identity as identity_schemas
from shared.schemas import servers as server_schemas
from shared.schemas import settings as settings_schemas


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    family: str  # OpenAPI tag: PVServers, Monitoring or Admin
    summary: str
    body: type | None = None
    query: type | None = None
    response: type | None = None
    many: bool = False
    status: int = 200
    public: bool = False
    errors: tuple = field(default=(400, 401, 403))


PREFIX = "/api/v2"

OPERATIONS = [
    Operation("GET", "/servers", "PVServers", "List managed servers", query=server_schemas.ServerListQuery,
              response=server_schemas.ServerPage),
    Operation("POST", "/servers", "PVServers", "Register a managed server", body=server_schemas.ServerCreate,
              response=server_schemas.ServerDetail, status=201, errors=(400, 401, 403, 409)),
    Operation("GET", "/servers/{server_id}", "PVServers", "Show a managed server", response=server_schemas.ServerDetail,
              errors=(401, 403, 404)),
    Operation("PATCH", "/servers/{server_id}", "PVServers", "Change a managed server (its server user or an admin)",
              body=server_schemas.ServerUpdate, response=server_schemas.ServerDetail, errors=(400, 401, 403, 404, 409)),
    Operation("DELETE", "/servers/{server_id}", "PVServers", "Delete a managed server (its server user or an admin)",
              status=204, errors=(401, 403, 404)),
    Operation("GET", "/settings", "Admin", "Show the admin settings (secrets only as *_set flags)",
              response=settings_schemas.AdminSettings),
    Operation("PATCH", "/settings", "Admin", "Change admin settings (admins)", body=settings_schemas.AdminSettings,
              response=settings_schemas.AdminSettings),
    Operation("POST", "/settings/rabbitmq/test", "Admin", "Try RabbitMQ credentials (saved ones fill the gaps)",
              body=settings_schemas.RabbitMQTest, response=settings_schemas.RabbitMQTestResult),
    Operation("GET", "/users", "Admin", "List users (admins)", response=identity_schemas.User, many=True),
    Operation("POST", "/users", "Admin", "Create a user (admins)", body=identity_schemas.UserCreate,
              response=identity_schemas.User, status=201, errors=(400, 401, 403, 409)),
    Operation("GET", "/users/{user_id}", "Admin", "Show a user", response=identity_schemas.User, errors=(401, 403, 404)),
    Operation("PATCH", "/users/{user_id}", "Admin", "Change a user's role or groups (admins)",
              body=identity_schemas.UserUpdate, response=identity_schemas.User, errors=(400, 401, 403, 404)),
    Operation("DELETE", "/users/{user_id}", "Admin", "Delete a user (admins)", status=204, errors=(401, 403, 404)),
    Operation("GET", "/tokens", "Admin", "List API tokens (yours; every one for admins)", response=identity_schemas.Token,
              many=True),
    Operation("POST", "/tokens", "Admin", "Create an API token; the secret is shown once", body=identity_schemas.TokenCreate,
              response=identity_schemas.NewToken, status=201, errors=(400, 401, 403, 404)),
    Operation("DELETE", "/tokens/{token_id}", "Admin", "Revoke an API token", status=204, errors=(401, 404)),
]
