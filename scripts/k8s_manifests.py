"""Render k8s/ from what the compose stack uses: the image, config/steward.yaml and the services.

    python -m scripts.k8s_manifests [--check]

Writes one file per part into k8s/ (``--check``: exit 1 when a committed file differs, so a
new service or a changed configuration cannot leave the manifests behind). The manifests are
plain YAML: apply them with ``kubectl apply -k k8s/`` once the RabbitMQ Cluster Operator and
CloudNativePG are installed, and after creating the Secret (docs/deploy.md).
"""
import argparse
import sys

import yaml

from shared.config import DEFAULT_PATH, ROOT, registered_services

K8S = ROOT / "k8s"
NAMESPACE = "steward"
VERSION = "0.1.0"  # pyproject.toml's version: the image tag of this release
IMAGE = f"steward/control-plane:{VERSION}"  # the tag docker-compose.yml builds by default
UID = 10001  # the image's steward user
# Seconds a process gets between SIGTERM and SIGKILL, as in docker-compose.yml (stop_grace_period).
GRACE_SECONDS = 30

# Measured in the compose stack: a service or consumer replica holds ~60-70 MiB at rest and a
# gateway ~70 MiB; requests leave room for batches and bursts, limits stop a leak.
RESOURCES = {
    "service": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "consumer": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "gateway": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "768Mi"}},
}

# checkov findings that do not apply, each with its reason (kept on the object as checkov.io/skip*).
SKIPS = {
    "CKV_K8S_43": "the image is built from this repository; pin its digest with kustomize images: after pushing it",
    "CKV_K8S_35": "config/steward.yaml reads secrets from environment variables; the Secret is mounted as such, never logged",
}
DEPLOYMENT_SKIPS = ("CKV_K8S_43", "CKV_K8S_35")

LABELS = {"app.kubernetes.io/part-of": "steward"}


def name_of(service):
    return service.replace("_", "-")


def metadata(name, component=None, annotations=None):
    labels = dict(LABELS, **({"app.kubernetes.io/component": component} if component else {}))
    data = {"name": name, "namespace": NAMESPACE, "labels": labels}
    if annotations:
        data["annotations"] = annotations
    return data


def skips(*checks):
    return {f"checkov.io/skip{n}": f"{check}={SKIPS[check]}" for n, check in enumerate(checks, 1)}


def environment():
    """The same variables docker-compose.yml sets, from the operators' Secrets and our own."""
    def secret(name, key):
        return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

    return [
        {"name": "STEWARD_CONFIG", "value": "/etc/steward/steward.yaml"},
        {"name": "STEWARD_SECRET_KEY", **secret("steward-secret-key", "secret-key")},
        # CloudNativePG makes <cluster>-app for the database owner; the -rw service is the primary.
        {"name": "STEWARD_DB_HOST", "value": "steward-db-rw"},
        {"name": "STEWARD_DB_NAME", "value": "steward"},
        {"name": "STEWARD_DB_USER", **secret("steward-db-app", "username")},
        {"name": "STEWARD_DB_PASSWORD", **secret("steward-db-app", "password")},
        # The RabbitMQ Cluster Operator makes <cluster>-default-user.
        {"name": "STEWARD_AMQP_HOST", "value": "steward-rabbitmq"},
        {"name": "STEWARD_AMQP_USER", **secret("steward-rabbitmq-default-user", "username")},
        {"name": "STEWARD_AMQP_PASSWORD", **secret("steward-rabbitmq-default-user", "password")},
        {"name": "STEWARD_RABBITMQ_MANAGEMENT_URL", "value": "http://steward-rabbitmq:15672"},
        # Durable work queues are quorum queues on the three-node cluster (shared/queues.py).
        {"name": "STEWARD_QUEUE_TYPE", "value": "quorum"},
        {"name": "STEWARD_PUBLIC_URL", "value": "https://steward.example.com"},
        {"name": "STEWARD_LOG_LEVEL", "value": "INFO"},
    ]


def container_security():
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def exec_probe(period):
    # A Python process reading the configuration: ~1 s on a loaded node, so a generous timeout.
    return {"exec": {"command": ["python", "-m", "scripts.container", "health"]}, "periodSeconds": period,
            "timeoutSeconds": 15, "failureThreshold": 3}


def container(name, args, kind, extra_env=(), probes=None, ports=None, mounts=()):
    spec = {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "args": args,
        "env": environment() + list(extra_env),
        "resources": RESOURCES[kind],
        "securityContext": container_security(),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/steward", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }
    if ports:
        spec["ports"] = ports
    spec.update(probes or {})
    return spec


def pod_spec(containers, volumes=(), init=None, restart=None):
    spec = {
        "serviceAccountName": "steward",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": [{"name": "config", "configMap": {"name": "steward-config"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *volumes],
    }
    if init:
        spec["initContainers"] = init
    if restart:
        spec["restartPolicy"] = restart
    return spec


def wait_for_migrations():
    """An init container: the release's migrations Job ran (the schema is at head); it migrates nothing itself."""
    return [container("migrated", ["check", "--migrated"], "service")]


def deployment(component, args, kind, replicas=2, probes=None, ports=None, extra_env=(), volumes=(), mounts=()):
    name = f"steward-{component}"
    selector = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, component, skips(*DEPLOYMENT_SKIPS)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": dict(LABELS, **selector, **{"app.kubernetes.io/component": component})},
                "spec": pod_spec([container(component, args, kind, extra_env, probes, ports, mounts)], volumes,
                                 init=wait_for_migrations()),
            },
        },
    }


def disruption_budget(component):
    name = f"steward-{component}"
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(name, component),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}}


def autoscaler(component, maximum):
    name = f"steward-{component}"
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata(name, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2, "maxReplicas": maximum,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                          "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


def network_policy(name, pod_selector, ingress=None, egress=None):
    types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    spec = {"podSelector": pod_selector, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(name), "spec": spec}


def steward_pods():
    return {"podSelector": {"matchLabels": LABELS}}


def tcp(*ports):
    return [{"protocol": "TCP", "port": port} for port in ports]


def render():
    """{file name: [objects]} for k8s/."""
    files = {}
    files["namespace.yaml"] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {
            **LABELS, "pod-security.kubernetes.io/enforce": "restricted"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata("steward"),
         "automountServiceAccountToken": False},
    ]
    files["config.yaml"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("steward-config"),
         "data": {"steward.yaml": DEFAULT_PATH.read_text()}},
        # Fill before the first apply (docs/deploy.md); a pod without it stops with one log line.
        {"apiVersion": "v1", "kind": "Secret", "metadata": metadata("steward-secret-key"), "type": "Opaque",
         "stringData": {"secret-key": ""}},
    ]
    files["rabbitmq.yaml"] = [{
        "apiVersion": "rabbitmq.com/v1beta1", "kind": "RabbitmqCluster", "metadata": metadata("steward-rabbitmq", "rabbitmq"),
        "spec": {
            "replicas": 3,
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            "persistence": {"storage": "10Gi"},
            "rabbitmq": {"additionalConfig": "cluster_partition_handling = pause_minority\n"},
        },
    }]
    files["postgres.yaml"] = [{
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": metadata("steward-db", "postgres"),
        "spec": {
            "instances": 3,
            # The major version the image's pg_dump (postgresql-client-15, Dockerfile) can dump; the operator's
            # default is its newest PostgreSQL, which that pg_dump refuses.
            "imageName": "ghcr.io/cloudnative-pg/postgresql:15",
            "bootstrap": {"initdb": {"database": "steward", "owner": "steward"}},
            "storage": {"size": "20Gi"},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            "postgresql": {"parameters": {"max_connections": "300"}},
        },
    }]
    files["migrate.yaml"] = [{
        "apiVersion": "batch/v1", "kind": "Job",
        # One Job per release: a new version is a new Job name, so it runs once for that release.
        "metadata": metadata(f"steward-migrate-{VERSION.replace('.', '-')}", "migrate", skips(*DEPLOYMENT_SKIPS)),
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": dict(LABELS, **{"app.kubernetes.io/component": "migrate"})},
                "spec": pod_spec([container("migrate", ["migrate"], "service")], restart="OnFailure"),
            },
        },
    }]
    for service in registered_services():
        component = name_of(service)
        files[f"{component}.yaml"] = [
            deployment(component, [service], "service",
                       probes={"readinessProbe": exec_probe(10), "livenessProbe": exec_probe(20)},
                       **({"volumes": [{"name": "images", "persistentVolumeClaim": {"claimName": "steward-images"}}],
                           "mounts": [{"name": "images", "mountPath": "/var/lib/steward/images"}]}
                          if service == "updater" else {})),
            disruption_budget(component),
        ]
    files["consumer.yaml"] = [
        deployment("consumer", ["consumer"], "consumer",
                   probes={"readinessProbe": exec_probe(10), "livenessProbe": exec_probe(20)}),
        disruption_budget("consumer"),
        autoscaler("consumer", 8),
    ]
    http = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    files["gateway.yaml"] = [
        deployment("gateway", ["gateway"], "gateway", ports=http,
                   # Keep serving 5 s after SIGTERM while the endpoints controller takes the pod out.
                   extra_env=[{"name": "STEWARD_DRAIN_SECONDS", "value": "5"}],
                   probes={
                       # Ready while it serves and reaches the broker: one service down must not take every
                       # gateway out of the Service (scripts/container.py health reads /healthz's answer).
                       "readinessProbe": exec_probe(5),
                       # Liveness asks nothing of the services: one service down must not restart gateways.
                       "livenessProbe": {"httpGet": {"path": "/api/v2/openapi.json", "port": "http"},
                                         "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
                   },
                   volumes=[{"name": "images", "persistentVolumeClaim": {"claimName": "steward-images"}}],
                   mounts=[{"name": "images", "mountPath": "/var/lib/steward/images"}]),
        disruption_budget("gateway"),
        autoscaler("gateway", 10),
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata("steward-gateway", "gateway"),
         "spec": {"selector": {"app.kubernetes.io/name": "steward-gateway"},
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata("steward", "gateway"),
         "spec": {
             "ingressClassName": "nginx",
             "tls": [{"hosts": ["steward.example.com"], "secretName": "steward-tls"}],
             "rules": [{"host": "steward.example.com", "http": {"paths": [{
                 "path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "steward-gateway", "port": {"name": "http"}}}}]}}],
         }},
    ]
    files["storage.yaml"] = [{
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata("steward-images", "updater"),
        # The gateway streams uploads into it and the updater moves them into the catalog.
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}}},
    }]
    dns = {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    inside = {"to": [{"podSelector": {}}]}  # the broker and the database, in this namespace
    anywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    files["network-policies.yaml"] = [
        network_policy("default-deny", {}, ingress=[], egress=[]),
        # Only the gateway is reachable from outside the namespace, and only from the ingress controller.
        network_policy("gateway-from-ingress", {"matchLabels": {"app.kubernetes.io/name": "steward-gateway"}}, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": tcp(8080)}]),
        # Steward's pods reach each other's dependencies, DNS, and nothing else by default.
        network_policy("steward-egress", {"matchLabels": LABELS}, egress=[dns, inside]),
        # The provisioner and updater log in to managed servers over SSH; the notifier sends mail and webhooks.
        network_policy("ssh-to-managed-servers", {"matchExpressions": [{
            "key": "app.kubernetes.io/component", "operator": "In", "values": ["provisioner", "updater"]}]},
            egress=[{"to": anywhere, "ports": tcp(22)}]),
        network_policy("notifier-out", {"matchLabels": {"app.kubernetes.io/component": "notifier"}},
                       egress=[{"to": anywhere, "ports": tcp(25, 465, 587, 443, 80)}]),
        # monitoring-ingest pulls statistics from pull-mode agents.
        # The backup service stores backups on backup servers' daemons (agent/backup_server/).
        network_policy("backup-to-backup-servers", {"matchLabels": {"app.kubernetes.io/component": "backup"}},
                       egress=[{"to": anywhere, "ports": tcp(8743)}]),
        network_policy("pull-from-agents", {"matchLabels": {"app.kubernetes.io/component": "monitoring-ingest"}},
                       egress=[{"to": anywhere, "ports": tcp(8741)}]),
        # Inside the namespace: Steward's pods reach the broker and the database (and the operators' own
        # traffic between their members); agents publish statistics to the broker's AMQP port.
        network_policy("within-namespace", {}, ingress=[{"from": [{"podSelector": {}}]}]),
        network_policy("agents-to-rabbitmq", {"matchLabels": {"app.kubernetes.io/name": "steward-rabbitmq"}},
                       ingress=[{"from": anywhere, "ports": tcp(5671, 5672)}]),
    ]
    return files


def dump(objects):
    header = "# Rendered by `python -m scripts.k8s_manifests` from config/steward.yaml and the registered services: edit those.\n"
    return header + "---\n".join(yaml.safe_dump(o, sort_keys=False, default_flow_style=False, width=120)
                                 for o in objects)


def kustomization(files):
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": sorted(files)}


def write(check=False):
    files = {name: dump(objects) for name, objects in render().items()}
    files["kustomization.yaml"] = dump([kustomization(files)])
    stale = []
    for name, text in files.items():
        path = K8S / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            K8S.mkdir(exist_ok=True)
            path.write_text(text)
    extra = sorted(p.name for p in K8S.glob("*.yaml") if p.name not in files) if K8S.exists() else []
    return stale, extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when k8s/ differs from what would be rendered")
    args = parser.parse_args(argv)
    stale, extra = write(check=args.check)
    if args.check and (stale or extra):
        print(f"k8s/ is out of date: {', '.join(stale + extra)} (python -m scripts.k8s_manifests)", file=sys.stderr)
        return 1
    print(f"k8s/: {len(stale)} file(s) written" if not args.check else "k8s/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
