"""deploy/k8s: valid against the Kubernetes OpenAPI schemas, consistent with the service settings.

kubernetes-validate bundles the schemas (strict mode: unknown fields are errors). The KServe CRD is
not among them, so the InferenceService is checked field by field, and its predictor (a PodSpec
inline, plus KServe's scaling fields) against the core PodSpec schema.
"""

import json
from decimal import Decimal
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
from kubernetes_validate.utils import latest_version

from service.settings import Settings
from tests.deploy.files import K8S_DIR, load_yaml, load_yaml_documents
from training.cli import build_parser

K8S_VERSION = latest_version()
KUSTOMIZE_RESOURCES = load_yaml(K8S_DIR / "kustomization.yaml")["resources"]
# applied with `kubectl create`, validated all the same; train-job.yaml last: KINDS["Job"] is it
STANDALONE = ["sweep-job.yaml", "train-job.yaml"]
KSERVE_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}
SETTINGS_PORT = Settings.model_fields["port"].default
SETTINGS_GRPC_PORT = Settings.model_fields["grpc_port"].default


def resources_by_kind() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in [*KUSTOMIZE_RESOURCES, *STANDALONE, "kserve-inferenceservice.yaml"]:
        for doc in load_yaml_documents(K8S_DIR / name):
            found[doc["kind"]] = doc
    return found


KINDS = resources_by_kind()


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def cpu_cores(quantity: str) -> Decimal:
    return Decimal(quantity[:-1]) / 1000 if quantity.endswith("m") else Decimal(quantity)


def core_schema_validator(definition: str) -> jsonschema.Draft202012Validator:
    """A validator for one core type (e.g. io.k8s.api.core.v1.PodSpec) from the bundled schemas."""
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    defs = json.loads((folder / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    registry = referencing.Registry().with_resource(
        defs["$id"], referencing.Resource.from_contents(defs))
    schema = {"$ref": f"{defs['$id']}#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_kustomization_lists_every_manifest_once() -> None:
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")}
    expected = on_disk - {"kustomization.yaml", "kserve-inferenceservice.yaml", *STANDALONE}
    assert sorted(KUSTOMIZE_RESOURCES) == sorted(expected)


@pytest.mark.parametrize("name", [*KUSTOMIZE_RESOURCES, *STANDALONE])
def test_manifest_validates_against_kubernetes_schemas(name: str) -> None:
    for doc in load_yaml_documents(K8S_DIR / name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = json.loads(json.dumps(KINDS["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def serving_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind, pod spec, container) for the Deployment and the KServe predictor."""
    deployment_pod = KINDS["Deployment"]["spec"]["template"]["spec"]
    predictor = KINDS["InferenceService"]["spec"]["predictor"]
    return [("Deployment", deployment_pod, deployment_pod["containers"][0]),
            ("InferenceService", predictor, predictor["containers"][0])]


@pytest.mark.parametrize(("kind", "pod", "container"), serving_containers(),
                         ids=["Deployment", "InferenceService"])
class TestServingPod:
    def test_probes_hit_the_v2_health_endpoints_on_the_serving_port(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        env = env_of(container)
        port, grpc = container["ports"]
        assert port["containerPort"] == int(env["MLP_PORT"]) == SETTINGS_PORT
        assert grpc["containerPort"] == int(env["MLP_GRPC_PORT"]) == SETTINGS_GRPC_PORT
        assert grpc["name"] == "grpc"
        assert env["MLP_HOST"] == "0.0.0.0"
        probes = {name: container[f"{name}Probe"]["httpGet"] for name in ("liveness", "readiness")}
        assert probes["liveness"]["path"] == "/v2/health/live"
        assert probes["readiness"]["path"] == "/v2/health/ready"
        assert {p["port"] for p in probes.values()} <= {port["containerPort"], port["name"]}
        # Start-up: gRPC's health service, SERVING once the models loaded and both ports listen.
        assert container["startupProbe"]["grpc"] == {"port": SETTINGS_GRPC_PORT}

    def test_cpu_is_one_core_per_worker_so_the_autoscaler_sees_saturation(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """One worker tops out near one core: more cores than workers would never reach 70%."""
        env = env_of(container)
        assert int(env["ORT_DISABLE_TELEMETRY"]) == 1
        threads = int(env["MLP_ORT_THREADS"])
        assert threads >= 1, "0 lets onnxruntime use every core of the node, not of the pod"
        resources_ = container["resources"]
        assert cpu_cores(resources_["requests"]["cpu"]) == int(env["MLP_WORKERS"])
        assert resources_["limits"] == resources_["requests"]  # Guaranteed QoS

    def test_grace_period_covers_prestop_and_drain(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        env = env_of(container)
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        drain = float(env["MLP_SHUTDOWN_DELAY_S"]) + float(env["MLP_SHUTDOWN_GRACE_S"])
        assert pod["terminationGracePeriodSeconds"] > int(command[1]) + drain

    def test_runs_as_non_root_with_a_read_only_root(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["enableServiceLinks"] is False  # no injected MLP_SERVE_PORT=tcp://...
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]

    def test_api_key_comes_from_a_secret(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        env = env_of(container)
        assert env["MLP_CONTROL_ENABLED"] == "true"
        assert set(env["MLP_API_KEY"]) == {"secretKeyRef"}
        assert not any(doc["kind"] == "Secret" for doc in KINDS.values())

    def test_environment_names_are_real_settings(
        self, kind: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        fields = {f"MLP_{name.upper()}" for name in Settings.model_fields}
        names = {name for name in env_of(container) if name.startswith("MLP_")}
        assert names - fields == set()


def test_deployment_mounts_the_repository_read_only() -> None:
    pod = KINDS["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount["readOnly"] is True
    assert env_of(container)["MLP_REPOSITORY"] == "/models"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]
    assert claim == {"claimName": KINDS["PersistentVolumeClaim"]["metadata"]["name"],
                     "readOnly": True}


def test_training_job_writes_the_same_claim() -> None:
    pod = KINDS["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "repository=/models" in container["args"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "models"]
    assert volume["persistentVolumeClaim"]["claimName"] == "mlp-models"


def test_sweep_job_runs_indexed_workers_on_one_shared_study() -> None:
    (job,) = load_yaml_documents(K8S_DIR / "sweep-job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] > 1
    (container,) = spec["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--storage") + 1] == "$(SWEEP_STORAGE)"
    assert args[args.index("--workers") + 1] == "1"  # one worker per pod; pods are the workers
    assert (K8S_DIR.parents[1] / args[args.index("--grid") + 1]).is_file()
    assert env_of(container)["SWEEP_STORAGE"] == {
        "secretKeyRef": {"name": "mlp-sweep-db", "key": "url"}}
    parsed = build_parser().parse_args(args)  # every option is a real mlp-train sweep option
    assert parsed.threads == 1 and parsed.storage == "$(SWEEP_STORAGE)"
    assert cpu_cores(container["resources"]["limits"]["cpu"]) == parsed.threads


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    deployment, service = KINDS["Deployment"], KINDS["Service"]
    hpa = KINDS["HorizontalPodAutoscaler"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    assert KINDS["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    container_ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [
        p["name"] for p in container_ports]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_inference_service_is_a_v2_custom_predictor() -> None:
    isvc = KINDS["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"]
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    env = env_of(container)
    assert env["PROTOCOL"] == "v2"
    assert env["STORAGE_URI"] == "pvc://mlp-models"  # mounted read-only at /mnt/models
    assert env["MLP_REPOSITORY"] == "/mnt/models"
    assert container["image"] == KINDS["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]


def test_inference_service_predictor_is_a_valid_pod_spec() -> None:
    predictor = dict(KINDS["InferenceService"]["spec"]["predictor"])
    assert set(predictor) >= KSERVE_FIELDS
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_FIELDS}
    errors = [e.message for e in core_schema_validator("io.k8s.api.core.v1.PodSpec")
              .iter_errors(pod_spec)]
    assert errors == []


def test_pod_spec_validator_rejects_a_bad_container() -> None:
    bad = {"containers": [{"name": "x", "ports": [{"containerPort": "eight thousand"}]}]}
    assert list(core_schema_validator("io.k8s.api.core.v1.PodSpec").iter_errors(bad))
