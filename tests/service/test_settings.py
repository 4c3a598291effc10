"""Settings: MLP_* environment, flags on top, refusals with one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.run.cli import build_parser, load_settings
from service.settings import Settings

KEY = "k" * 20


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_REPOSITORY", "/srv/models")
    monkeypatch.setenv("MLP_PORT", "9000")
    monkeypatch.setenv("MLP_API_KEY", KEY)
    monkeypatch.setenv("MLP_MAX_BATCH_SIZE", "32")
    settings = Settings()
    assert (settings.repository, settings.port, settings.max_batch_size) == (
        Path("/srv/models"), 9000, 32)
    assert settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings)


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_PORT", "9000")
    monkeypatch.setenv("MLP_API_KEY", KEY)
    settings = load_settings(["--port", "9100", "--models", "a:2,b", "--max-queue-delay-ms",
                              "0.5"])
    assert settings.port == 9100
    assert settings.model_selection() == {"a": 2, "b": None}
    assert settings.max_queue_delay_ms == 0.5
    assert load_settings(["--no-control"]).control_enabled is False


@pytest.mark.parametrize("key", ["", "short", "changeme", "CHANGEME", "xxxxxxxxxxxxxxxx"])
def test_weak_api_key_refuses_start(key: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLP_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(["--api-key", key])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err
    assert line.count("\n") == 1
    assert line.startswith("mlp-serve: invalid setting: MLP_API_KEY must be a random string of "
                           "at least 16 characters when model control is enabled")


def test_weak_key_is_fine_without_control() -> None:
    assert Settings(control_enabled=False).control_enabled is False


def test_several_workers_keep_model_control_and_its_key_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(["--api-key", KEY, "--workers", "2"])
    assert (settings.workers, settings.control_enabled) == (2, True)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(["--api-key", "short", "--workers", "2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(
        "mlp-serve: invalid setting: MLP_API_KEY must be a random string of at least 16 "
        "characters when model control is enabled")
    assert load_settings(["--workers", "2", "--no-control"]).workers == 2


def test_several_workers_need_a_fixed_port() -> None:
    with pytest.raises(ValidationError, match="several workers share one port, so it must be "
                       r"fixed: set --port \(MLP_PORT\) to a port number, not 0"):
        Settings(control_enabled=False, workers=2, port=0)
    with pytest.raises(ValidationError, match="less than or equal to 64"):
        Settings(control_enabled=False, workers=65)


def test_bad_value_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(["--no-control", "--port", "eighty"])
    assert capsys.readouterr().err == (
        "mlp-serve: invalid setting port (MLP_PORT / --port): Input should be a valid integer, "
        "unable to parse string as an integer\n")


def test_bad_models_entry() -> None:
    with pytest.raises(ValidationError, match="MLP_MODELS entry 'a:x': version must be a positive"):
        Settings(control_enabled=False, models="a:x")


def test_every_field_is_documented_and_has_a_flag() -> None:
    flags = build_parser().format_help()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert "--" + name.replace("_", "-") in flags


def test_only_settings_reads_the_environment() -> None:
    service = Path(__file__).resolve().parents[2] / "service"
    uses = {path.relative_to(service).as_posix():
            re.findall(r"os\.environ\S*|getenv\(", path.read_text())
            for path in service.rglob("*.py")}
    assert {name for name, found in uses.items() if found} <= {"settings.py", "__init__.py",
                                                              "run/supervisor.py"}
    # The supervisor only writes prometheus_client's variable for its workers, never reads;
    # the package only defaults onnxruntime's telemetry switch to off, before its import.
    assert uses["run/supervisor.py"] == ["os.environ[MULTIPROC_ENV]"]
    assert uses["__init__.py"] == ['os.environ.setdefault("ORT_DISABLE_TELEMETRY",']
