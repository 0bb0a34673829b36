"""k8s/: rendered from what the compose stack uses, valid against the Kubernetes schemas, and
clean under checkov. The checking tools live in .venv-deploy (requirements-deploy.lock): checkov
pins versions the main environment refuses. Nothing is downloaded while the tests run."""
import json
import subprocess
from pathlib import Path

import yaml

from scripts import k8s_manifests
from shared.config import DEFAULT_PATH, registered_services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PYTHON = ROOT / ".venv-deploy" / "bin" / "python"
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))
ROLES = {k8s_manifests.name_of(s) for s in registered_services()} | {"consumer", "gateway"}


class PlainYaml(yaml.SafeLoader):
    """YAML as written: nameko's loader (once any configuration was read) resolves ${...} in SafeLoader."""

    yaml_implicit_resolvers = {key: list(value) for key, value in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}


def objects(kind=None):
    found = [d for path in MANIFESTS for d in yaml.load_all(path.read_text(), Loader=PlainYaml) if d]
    return [d for d in found if kind is None or d["kind"] == kind]


def validate(paths):
    done = subprocess.run([str(DEPLOY_PYTHON), "-m", "tests.deploy.validate", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {"errors": [done.stderr]}


def test_the_manifests_are_rendered_from_the_current_configuration_and_services():
    stale, extra = k8s_manifests.write(check=True)
    assert (stale, extra) == ([], []), "run python -m scripts.k8s_manifests"
    (config,) = [c for c in objects("ConfigMap") if c["metadata"]["name"] == "steward-config"]
    assert config["data"]["steward.yaml"] == DEFAULT_PATH.read_text()


def test_every_object_is_valid_against_the_kubernetes_and_operator_schemas():
    result = validate(MANIFESTS)
    assert result["errors"] == [] and result["validated"] == len(objects()) - 1  # all but the Kustomization


def test_the_validation_refuses_unknown_fields_and_wrong_types(tmp_path):
    bad = []
    for document in objects():
        if document["kind"] in ("Deployment", "RabbitmqCluster", "Cluster"):
            document = json.loads(json.dumps(document))
            document["spec"]["replicaCount" if document["kind"] != "Cluster" else "instances"] = "three"
            bad.append(document)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(bad))
    result = validate([path])
    assert len(result["errors"]) == len(bad)
    assert any("RabbitmqCluster" in e for e in result["errors"]) and any("Cluster steward-db" in e for e in result["errors"])


def test_checkov_finds_nothing_and_every_skip_says_why():
    done = subprocess.run([str(ROOT / ".venv-deploy" / "bin" / "checkov"), "-d", "k8s", "--framework", "kubernetes",
                           "--skip-download", "--quiet", "-o", "json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["passed"] > 0, failed
    for document in objects():
        for key, value in (document.get("metadata", {}).get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check in k8s_manifests.SKIPS and len(reason) > 20, value


def test_what_the_platform_needs_is_there_for_every_process():
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in objects("Deployment")}
    assert set(deployments) == ROLES
    compose = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=PlainYaml)
    grace = int(compose["x-steward-service"]["stop_grace_period"].rstrip("s"))
    compose_environment = set(compose["x-steward-environment"])
    for role, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert deployment["spec"]["replicas"] >= 2, role
        assert container["image"] == k8s_manifests.IMAGE
        assert "readinessProbe" in container and "livenessProbe" in container, role
        assert container["resources"]["requests"] and container["resources"]["limits"], role
        assert pod["terminationGracePeriodSeconds"] == grace, role
        assert compose_environment <= {e["name"] for e in container["env"]}, role
        assert [c["args"] for c in pod["initContainers"]] == [["check", "--migrated"]], role
    # The same image the compose stack runs by default.
    assert compose["x-steward-service"]["image"].endswith(":-" + k8s_manifests.IMAGE + "}")
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in objects("PodDisruptionBudget")}
    assert budgets == {f"steward-{role}" for role in ROLES}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in objects("HorizontalPodAutoscaler")} == {
        "steward-gateway", "steward-consumer"}
    (job,) = objects("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    (rabbitmq,) = objects("RabbitmqCluster")
    (postgres,) = objects("Cluster")
    assert rabbitmq["spec"]["replicas"] == 3 and postgres["spec"]["instances"] == 3
    assert not objects("StatefulSet")


def test_only_the_gateway_is_reachable_from_outside_the_namespace():
    policies = objects("NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and p["spec"]["ingress"] == [] for p in policies)  # deny by default
    outside = [p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
               for p in policies for rule in p["spec"].get("ingress", [])
               for peer in rule.get("from", []) if "namespaceSelector" in peer or "ipBlock" in peer]
    # Besides the gateway (from the ingress controller), agents publish statistics to the broker's AMQP port.
    assert set(outside) == {"steward-gateway", "steward-rabbitmq"}
