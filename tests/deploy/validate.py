"""Validate every object in k8s/ against the Kubernetes schemas; run in .venv-deploy (make test does).

    .venv-deploy/bin/python -m tests.deploy.validate k8s/*.yaml

Built-in kinds are checked strictly (unknown fields refused) against the schemas that the
pinned kubernetes-validate package ships. The two operators' kinds have no schema in any
package on PyPI, so OPERATOR_SCHEMAS below states the part of RabbitmqCluster
(rabbitmq.com/v1beta1) and CloudNativePG's Cluster (postgresql.cnpg.io/v1) that Steward
uses, after their API references: the spec fields each kind accepts (others refused),
their types, and Kubernetes' own definitions for resources, affinity and metadata.
Prints one JSON object: {"validated": N, "errors": [...]}.
"""
import json
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on
DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/"


def ref(name):
    return {"$ref": DEFINITIONS + name}


QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"},
                      {"type": "integer"}]}


def closed(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def custom_resource(api_version, kind, spec):
    return closed({
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        "metadata": ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": spec,
    }, required=("apiVersion", "kind", "metadata", "spec"))


OPERATOR_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): custom_resource("rabbitmq.com/v1beta1", "RabbitmqCluster", closed({
        "replicas": {"type": "integer", "minimum": 0},
        "image": {"type": "string"},
        "imagePullSecrets": {"type": "array", "items": ref("io.k8s.api.core.v1.LocalObjectReference")},
        "service": closed({"type": {"enum": ["ClusterIP", "LoadBalancer", "NodePort"]},
                           "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}),
        "persistence": closed({"storageClassName": {"type": "string"}, "storage": QUANTITY}),
        "resources": ref("io.k8s.api.core.v1.ResourceRequirements"),
        "affinity": ref("io.k8s.api.core.v1.Affinity"),
        "tolerations": {"type": "array", "items": ref("io.k8s.api.core.v1.Toleration")},
        "rabbitmq": closed({"additionalPlugins": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                            "additionalConfig": {"type": "string", "maxLength": 100000},
                            "advancedConfig": {"type": "string", "maxLength": 100000},
                            "envConfig": {"type": "string", "maxLength": 100000}}),
        "tls": closed({"secretName": {"type": "string"}, "caSecretName": {"type": "string"},
                       "disableNonTLSListeners": {"type": "boolean"}}),
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
        "delayStartSeconds": {"type": "integer", "minimum": 0},
        "skipPostDeploySteps": {"type": "boolean"},
        "override": {"type": "object"},
    })),
    ("postgresql.cnpg.io/v1", "Cluster"): custom_resource("postgresql.cnpg.io/v1", "Cluster", closed({
        "description": {"type": "string"},
        "instances": {"type": "integer", "minimum": 1},
        "imageName": {"type": "string"},
        "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
        "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
        "minSyncReplicas": {"type": "integer", "minimum": 0},
        "maxSyncReplicas": {"type": "integer", "minimum": 0},
        "postgresql": closed({"parameters": {"type": "object", "additionalProperties": {"type": "string"}},
                              "pg_hba": {"type": "array", "items": {"type": "string"}}}),
        "bootstrap": closed({"initdb": closed({"database": {"type": "string"}, "owner": {"type": "string"},
                                                "secret": closed({"name": {"type": "string"}}, required=("name",))})}),
        "storage": closed({"size": QUANTITY, "storageClass": {"type": "string"},
                           "resizeInUseVolumes": {"type": "boolean"}}),
        "walStorage": closed({"size": QUANTITY, "storageClass": {"type": "string"}}),
        "resources": ref("io.k8s.api.core.v1.ResourceRequirements"),
        "affinity": closed({"enablePodAntiAffinity": {"type": "boolean"}, "topologyKey": {"type": "string"},
                            "podAntiAffinityType": {"enum": ["preferred", "required"]}}),
        "monitoring": closed({"enablePodMonitor": {"type": "boolean"}}),
        "enableSuperuserAccess": {"type": "boolean"},
    }, required=("instances",))),
}


def definitions_registry():
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(KUBERNETES_VERSION)][-1]
    definitions = utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json",
                                        KUBERNETES_VERSION)
    return Resource.from_contents(definitions) @ Registry()


def validate(documents):
    registry = definitions_registry()
    errors = []
    for source, document in documents:
        where = f"{source}: {document.get('kind')} {document.get('metadata', {}).get('name')}"
        schema = OPERATOR_SCHEMAS.get((document.get("apiVersion"), document.get("kind")))
        try:
            if schema is not None:
                jsonschema.Draft202012Validator(schema, registry=registry).validate(document)
            else:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, utils.ValidationError) as exc:
            errors.append(f"{where}: {exc.message} at {'/'.join(map(str, exc.absolute_path))}")
        except utils.SchemaNotFoundError:
            errors.append(f"{where}: no schema for {document.get('apiVersion')} {document.get('kind')}")
    return errors


def main(paths):
    documents = [(path, document) for path in paths for document in yaml.safe_load_all(open(path)) if document
                 and document.get("kind") != "Kustomization"]
    errors = validate(documents)
    print(json.dumps({"validated": len(documents), "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
