"""docker-compose.yml: valid Compose, and wired as train-once-then-serve with no secret defaults."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.settings import Settings
from tests.deploy.files import (
    COMPOSE_FILES,
    ROOT,
    SERVICE_DOCKERFILE,
    TRAINING_DOCKERFILE,
    compose_schema,
    dockerfile_instructions,
    load_yaml,
)
from training.cli import build_parser

# Variables for what the service runs on, not service settings.
NOT_SETTINGS = {"ORT_DISABLE_TELEMETRY"}
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; Compose refuses the file. So refuse too."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("path", [*COMPOSE_FILES, ROOT / "deploy" / "compose.host-network.yml"],
                         ids=lambda p: p.name)
def test_no_key_appears_twice_in_a_mapping(path: Path) -> None:
    UniqueKeyLoader.add_constructor("!reset", lambda loader, node: None)
    yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    with pytest.raises(yaml.constructor.ConstructorError, match="MLP_A"):
        yaml.load("a:\n  MLP_A: 1\n  MLP_A: 2\n", Loader=UniqueKeyLoader)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_file_validates_against_the_compose_specification(path: Path) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(load_yaml(path))]
    assert errors == []


def test_the_schema_rejects_a_broken_file() -> None:
    """The schema really checks services: an unknown key and a wrong depends_on condition fail."""
    schema = compose_schema()
    broken = {"services": {"service": {"image": "x", "depends_on": {"train": {"condition": "done"}},
                                       "helthcheck": {}}}}
    messages = [e.message for e in jsonschema.validators.validator_for(schema)(schema)
                .iter_errors(broken)]
    assert any("helthcheck" in m for m in messages)
    assert any("'done'" in m for m in messages)


def test_service_starts_only_after_training_succeeded(compose: dict[str, Any]) -> None:
    assert compose["services"]["service"]["depends_on"] == {
        "train": {"condition": "service_completed_successfully"}
    }


def test_train_runs_the_image_command_but_only_while_no_model_is_published(
    compose: dict[str, Any],
) -> None:
    """Every `up` starts `train`: without --skip-if-published each one would publish a version."""
    (cmd,) = [i["value"] for i in dockerfile_instructions(TRAINING_DOCKERFILE)
              if i["instruction"] == "CMD"]
    image_command = json.loads(cmd)
    command = compose["services"]["train"]["command"]
    assert command == [image_command[0], "--skip-if-published", *image_command[1:]]
    args = build_parser().parse_args(command)  # a real mlp-train option, not a typo
    assert args.skip_if_published and not args.no_publish


def test_train_writes_the_volume_and_service_reads_it_read_only(compose: dict[str, Any]) -> None:
    service, train = compose["services"]["service"], compose["services"]["train"]
    assert "models" in compose["volumes"]
    assert train["volumes"] == [{"type": "volume", "source": "models", "target": "/models"}]
    assert service["volumes"] == [
        {"type": "volume", "source": "models", "target": "/models", "read_only": True}
    ]


def test_each_service_builds_its_own_dockerfile_with_a_pinned_tag(compose: dict[str, Any]) -> None:
    for name, dockerfile in [("train", "training/Dockerfile"), ("service", "service/Dockerfile")]:
        spec = compose["services"][name]
        assert spec["build"] == {"context": ".", "dockerfile": dockerfile}
        assert (ROOT / dockerfile).is_file()
        _, _, tag = spec["image"].partition(":")
        assert tag and tag != "latest", spec["image"]


def test_healthcheck_asks_the_ready_endpoint_on_the_container_port(compose: dict[str, Any]) -> None:
    """MLP_PORT when set (the host-network override moves it), else the service's default."""
    test = compose["services"]["service"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "'http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MLP_PORT'," in test[3]
    assert f"'{Settings.model_fields['port'].default}')" in test[3]


def test_published_ports_map_to_the_service_default_ports(compose: dict[str, Any]) -> None:
    http, grpc = compose["services"]["service"]["ports"]
    for mapping, field in ((http, "port"), (grpc, "grpc_port")):
        assert mapping.startswith("127.0.0.1:")  # local only unless the user says otherwise
        assert mapping.endswith(f":{Settings.model_fields[field].default}")


def test_environment_names_are_real_settings() -> None:
    """A typo like MLP_MAX_BATCH would silently do nothing; every MLP_* name must be a field."""
    fields = {f"MLP_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    for path in COMPOSE_FILES:
        for name, spec in load_yaml(path)["services"].items():
            unknown = sorted(set(spec.get("environment", {})) - fields)
            assert unknown == [], f"{path.name}: service {name} sets unknown settings {unknown}"


def test_settings_reach_the_service(compose: dict[str, Any]) -> None:
    """MLP_* settings are passed through from the shell, except what the image fixes: a setting
    missing here is one that `export MLP_...; docker compose up` silently ignores. The speed
    settings must be there, and every other one too."""
    environment = compose["services"]["service"]["environment"]
    fields = {f"MLP_{name.upper()}" for name in Settings.model_fields}
    image_env = {pair.split("=")[0] for i in dockerfile_instructions(SERVICE_DOCKERFILE)
                 if i["instruction"] == "ENV" for pair in i["value"].split()}
    fixed = {"MLP_HOST", "MLP_PORT", "MLP_REPOSITORY", "MLP_API_KEY"}  # API key: the overlay
    assert fixed - {"MLP_API_KEY"} <= image_env
    assert {"MLP_WORKERS", "MLP_CPU_PINNING", "MLP_KEEP_ALIVE_S", "MLP_MAX_BATCH_SIZE",
            "MLP_ORT_THREADS", "MLP_SHUTDOWN_GRACE_S"} <= set(environment)
    missing = sorted(fields - fixed - set(environment))
    assert not missing, f"add to docker-compose.yml: {missing}"
    assert environment["ORT_DISABLE_TELEMETRY"] == "1"


def test_grace_period_covers_the_service_drain(compose: dict[str, Any]) -> None:
    service = compose["services"]["service"]
    drain = (Settings.model_fields["shutdown_grace_s"].default
             + Settings.model_fields["shutdown_delay_s"].default)
    assert int(service["stop_grace_period"].removesuffix("s")) > drain


def test_plain_compose_needs_no_secret_and_the_control_overlay_requires_one() -> None:
    base, control = (load_yaml(path) for path in COMPOSE_FILES)
    base_env = base["services"]["service"]["environment"]
    assert base_env["MLP_CONTROL_ENABLED"] == "false"
    assert "MLP_API_KEY" not in base_env
    control_env = control["services"]["service"]["environment"]
    assert control_env["MLP_CONTROL_ENABLED"] == "true"
    match = INTERPOLATION.fullmatch(control_env["MLP_API_KEY"])
    assert match and match["name"] == "MLP_API_KEY" and match["op"] == ":?"
    assert "openssl rand" in match["arg"]  # the message says how to make one


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_no_secret_has_a_default_value(path: Path) -> None:
    """A secret is either absent or required (`${NAME:?message}`), never `${NAME:-something}`."""
    text = path.read_text()
    secrets = [m for m in INTERPOLATION.finditer(text) if SECRET_NAME.search(m["name"])]
    assert all(m["op"] in (":?", "?") for m in secrets), [m[0] for m in secrets]
    for name, spec in load_yaml(path)["services"].items():
        for key, value in spec.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert isinstance(value, str) and INTERPOLATION.fullmatch(value), (
                    f"{path.name}: {name}.{key} must come from the environment, not the file")
