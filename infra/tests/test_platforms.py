"""The deployment files outside AWS agree with the server: Render, Railway, systemd, .env.example and
compose.yaml name only settings the server reads, the health path, the archive path and a kill
deadline above the shutdown timeout. compose.yaml's moto init script runs for real against the
pinned moto."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from layout_spec import (
    AWS_SDK_ENV_VARS,
    CLI_ENV_VARS,
    COMPOSE_YAML,
    CONTAINER_ARCHIVE_DIR,
    DOCKERFILE,
    ENV_EXAMPLE,
    FIREHOSE_SHUTDOWN_DRAIN_SECS,
    HEALTH_PATH,
    IMAGE_LOCAL,
    IMAGE_TARGET,
    LOG_FILTER_ENV_VAR,
    METRICS_PORT,
    MOTO_IMAGE,
    RAILWAY_TOML,
    RENDER_YAML,
    REQUIREMENTS_TEST,
    SECRET_ENV_VAR,
    SERVER_PORT,
    SERVICE_ENV_VARS,
    SHUTDOWN_TIMEOUT_SECS,
    STOP_TIMEOUT_SECS,
    SYSTEMD_ARCHIVE_DIR,
    SYSTEMD_ENVIRONMENT_FILE,
    SYSTEMD_STATE_DIRECTORY,
    SYSTEMD_UNIT,
    UPCOMING_ENV_VARS,
)

# What a deployment file may set: the server's settings, the log filter, the AWS SDK's variables.
SERVER_ENV = SERVICE_ENV_VARS | {LOG_FILTER_ENV_VAR} | AWS_SDK_ENV_VARS
# The AWS SDK for Python (moto-init) also reads these.
BOTO_ENV = {"AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED"}


def _kill_deadline_is_enough(seconds: int) -> None:
    assert seconds == STOP_TIMEOUT_SECS
    assert seconds > SHUTDOWN_TIMEOUT_SECS + FIREHOSE_SHUTDOWN_DRAIN_SECS


# ---------------------------------------------------------------------------------------------
# Render
# ---------------------------------------------------------------------------------------------

FIREHOSE_ALTERNATIVE = re.compile(
    r"^# --- firehose-alternative ---\n(.*?)^# --- end firehose-alternative ---$", re.M | re.S
)


def _render_services() -> dict[str, dict[str, Any]]:
    """The Blueprint as written (file sink on a disk) and its commented Firehose alternative."""
    text = RENDER_YAML.read_text()
    m = FIREHOSE_ALTERNATIVE.search(text)
    assert m, "render.yaml: the commented Firehose alternative between its markers is missing"
    alternative = "\n".join(line.removeprefix("# ").removeprefix("#") for line in m.group(1).splitlines())
    (file_sink,) = yaml.safe_load(text)["services"]
    (firehose,) = yaml.safe_load(alternative)["services"]
    return {"file": file_sink, "firehose": firehose}


@pytest.mark.parametrize("variant", ["file", "firehose"])
def test_render_blueprint(variant: str) -> None:
    service = _render_services()[variant]
    assert service["type"] == "web" and service["runtime"] == "docker"
    assert service["dockerfilePath"] == f"./{DOCKERFILE}" and service["dockerContext"] == "."
    assert service["healthCheckPath"] == HEALTH_PATH
    _kill_deadline_is_enough(service["maxShutdownDelaySeconds"])
    env = {v["key"]: v for v in service["envVars"]}
    assert set(env) <= SERVER_ENV, set(env) - SERVER_ENV
    assert env["SINK"]["value"] == variant
    assert env["PORT"]["value"] == str(SERVER_PORT)
    # Secrets are asked for at setup (sync: false) and never written in the file.
    for name in {SECRET_ENV_VAR, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env):
        assert env[name] == {"key": name, "sync": False}, name
    assert env[SECRET_ENV_VAR]["sync"] is False
    if variant == "file":
        # The archive on the persistent disk; a disk allows one instance.
        assert service["disk"]["mountPath"] == env["ARCHIVE_DIR"]["value"] == CONTAINER_ARCHIVE_DIR
        assert service["numInstances"] == 1
    else:
        assert "disk" not in service and "ARCHIVE_DIR" not in env
        assert {"AWS_REGION", "FIREHOSE_DELIVERY_STREAM_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)


# ---------------------------------------------------------------------------------------------
# Railway
# ---------------------------------------------------------------------------------------------


def test_railway_config() -> None:
    config = tomllib.loads(RAILWAY_TOML.read_text())
    assert set(config) == {"build", "deploy"}, "Railway reads only [build] and [deploy]"
    assert config["build"] == {"builder": "DOCKERFILE", "dockerfilePath": DOCKERFILE}
    deploy = config["deploy"]
    assert deploy["healthcheckPath"] == HEALTH_PATH
    assert deploy["restartPolicyType"] == "ON_FAILURE" and deploy["restartPolicyMaxRetries"] > 0
    # Railway's parser wants numbers here, not strings.
    assert isinstance(deploy["drainingSeconds"], int) and isinstance(deploy["healthcheckTimeout"], int)
    _kill_deadline_is_enough(deploy["drainingSeconds"])
    # The volume and the variables are set outside the file: its comments say how, with our names.
    comments = "\n".join(line for line in RAILWAY_TOML.read_text().splitlines() if line.startswith("#"))
    assert f"railway volume add --mount-path {CONTAINER_ARCHIVE_DIR}" in comments
    assert f"ARCHIVE_DIR={CONTAINER_ARCHIVE_DIR}" in comments and "RAILWAY_RUN_UID=0" in comments
    named = set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})=", comments))
    named |= set(re.findall(r"set ([A-Z][A-Z0-9_]+) --stdin", comments))
    assert named - {"RAILWAY_RUN_UID"} <= SERVER_ENV, named - SERVER_ENV


# ---------------------------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    # systemd keys are case-sensitive and may repeat (the later one adds or overrides).
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SYSTEMD_UNIT.read_text())
    return parser


def _repeated(key: str) -> list[str]:
    """Every value of a key that may repeat (configparser keeps only the last)."""
    return [m.group(1) for m in re.finditer(rf"^{key}=(.*)$", SYSTEMD_UNIT.read_text(), re.M)]


def test_systemd_unit_is_hardened() -> None:
    service = _unit()["Service"]
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "StateDirectory": SYSTEMD_STATE_DIRECTORY,
        "ReadWritePaths": SYSTEMD_ARCHIVE_DIR,
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "EnvironmentFile": SYSTEMD_ENVIRONMENT_FILE,
        "DynamicUser": "yes",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) <= {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert _repeated("SystemCallFilter")[0] == "@system-service"
    assert service["ExecStart"].split()[0].endswith("/stripe-webhook-server")
    _kill_deadline_is_enough(int(service["TimeoutStopSec"]))
    # The archive is the state directory, the only writable path.
    assert SYSTEMD_ARCHIVE_DIR == f"/var/lib/{SYSTEMD_STATE_DIRECTORY}"
    env = dict(value.split("=", 1) for value in _repeated("Environment"))
    assert env["ARCHIVE_DIR"] == SYSTEMD_ARCHIVE_DIR
    assert set(env) <= SERVER_ENV, set(env) - SERVER_ENV
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package (it works offline, without PID 1)")
    return path


def _unit_with_a_stand_in_binary(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a stand-in executable (verify checks that it exists)."""
    binary = tmp_path / "stripe-webhook-server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", SYSTEMD_UNIT.read_text(), count=1, flags=re.M)
    unit = tmp_path / SYSTEMD_UNIT.name
    unit.write_text(text)
    return unit


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = _unit_with_a_stand_in_binary(tmp_path)
    r = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), f"{r.stdout}{r.stderr}"


# systemd-analyze security rates 0 (locked down) to 10 (exposed), "OK" below 4.5; its --threshold
# is in tenths.
MAX_EXPOSURE = 2.0


def test_systemd_analyze_security(tmp_path: Path) -> None:
    unit = _unit_with_a_stand_in_binary(tmp_path)
    r = subprocess.run(
        [
            _systemd_analyze(),
            "security",
            "--offline=yes",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert r.returncode == 0 and float(m.group(1)) <= MAX_EXPOSURE, r.stdout[-3000:]


# ---------------------------------------------------------------------------------------------
# .env.example
# ---------------------------------------------------------------------------------------------

ENV_LINE = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def _env_example() -> dict[str, tuple[bool, str]]:
    """name -> (commented out, value) for every `NAME=value` line, commented or not."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = ENV_LINE.match(line)
        if m:
            assert m.group(2) not in found or found[m.group(2)][0], f"{m.group(2)} set twice"
            found.setdefault(m.group(2), (m.group(1) is not None, m.group(3)))
    return found


def test_env_example_lists_every_setting() -> None:
    listed = _env_example()
    missing = (SERVICE_ENV_VARS | UPCOMING_ENV_VARS | {LOG_FILTER_ENV_VAR}) - set(listed)
    assert not missing, f".env.example lacks {sorted(missing)}"
    unknown = set(listed) - SERVER_ENV - UPCOMING_ENV_VARS - CLI_ENV_VARS
    assert not unknown, f".env.example names what nothing reads: {sorted(unknown)}"


def test_env_example_sets_only_the_fake_secret() -> None:
    """Defaults are commented out; the one uncommented line is an obviously fake secret."""
    active = {name: value for name, (commented, value) in _env_example().items() if not commented}
    assert set(active) == {SECRET_ENV_VAR}
    secret = active[SECRET_ENV_VAR]
    assert secret.startswith("whsec_") and "REPLACE_ME" in secret
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "EXAMPLE" in _env_example()[name][1].upper(), f"{name} must be an obvious placeholder"
    # The format both dotenv and systemd's EnvironmentFile read: no quotes, no surrounding spaces.
    for name, (_, value) in _env_example().items():
        assert value == value.strip() and not value.startswith(('"', "'")), name


# ---------------------------------------------------------------------------------------------
# compose.yaml
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_YAML.read_text())


def _pinned_moto() -> str:
    m = re.search(r"^moto\[server\]==(\S+)$", REQUIREMENTS_TEST.read_text(), re.M)
    assert m, "moto[server] is not pinned in scripts/requirements-test.txt"
    return m.group(1)


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"moto", "moto-init", "server"}
    server = services["server"]
    assert server["image"] == IMAGE_LOCAL
    assert server["build"] == {"context": ".", "target": IMAGE_TARGET}
    assert server["depends_on"] == {"moto-init": {"condition": "service_completed_successfully"}}
    assert services["moto-init"]["depends_on"] == {"moto": {"condition": "service_healthy"}}
    for name in ("moto", "moto-init"):
        assert services[name]["image"] == f"{MOTO_IMAGE}:{_pinned_moto()}", name
    assert server["read_only"] is True and server["cap_drop"] == ["ALL"]
    _kill_deadline_is_enough(int(server["stop_grace_period"].removesuffix("s")))
    # Everything published on the host's loopback only.
    published = [f"127.0.0.1:{port}:{port}" for port in (SERVER_PORT, METRICS_PORT)]
    assert sorted(server["ports"]) == sorted(published)
    assert services["moto"]["ports"] == ["127.0.0.1:5000:5000"]


def test_compose_server_environment(compose: dict[str, Any]) -> None:
    env = compose["services"]["server"]["environment"]
    assert set(env) <= SERVER_ENV | BOTO_ENV, set(env) - SERVER_ENV
    assert env["SINK"] == "firehose" and env["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert env["METRICS_ADDR"] == f"0.0.0.0:{METRICS_PORT}"
    # The secret comes from .env (the same the CLI reads), never from compose.yaml itself.
    assert env[SECRET_ENV_VAR].startswith(f"${{{SECRET_ENV_VAR}:?")


def test_compose_init_creates_the_servers_stream(compose: dict[str, Any]) -> None:
    init, server = compose["services"]["moto-init"], compose["services"]["server"]
    for name in ("FIREHOSE_DELIVERY_STREAM_NAME", "OVERSIZE_S3_BUCKET"):
        assert init["environment"][name] == server["environment"][name], name
    script = init["command"][0]
    assert init["entrypoint"] == ["python3", "-c"]
    assert "$" not in script, "compose would interpolate it"
    assert 'os.environ["FIREHOSE_DELIVERY_STREAM_NAME"]' in script and 'DeliveryStreamType="DirectPut"' in script


def test_compose_init_script_against_moto(compose: dict[str, Any], moto_endpoint: str) -> None:
    """Runs moto-init's script with its compose environment (endpoint moved to the local moto), twice
    (a restarted stack), then checks the stream the server will use and that a record reaches S3."""
    init, server = compose["services"]["moto-init"], compose["services"]["server"]
    env = {k: str(v) for k, v in init["environment"].items()}
    env |= {"AWS_ENDPOINT_URL": moto_endpoint, "PATH": os.environ["PATH"]}
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-c", init["command"][0]], env=env, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        assert "moto-init: Direct PUT stream stripe-webhooks (ACTIVE)" in r.stdout, r.stdout

    import boto3

    clients = {
        "endpoint_url": moto_endpoint,
        "region_name": server["environment"]["AWS_REGION"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    firehose, s3 = boto3.client("firehose", **clients), boto3.client("s3", **clients)
    stream = server["environment"]["FIREHOSE_DELIVERY_STREAM_NAME"]
    bucket = server["environment"]["OVERSIZE_S3_BUCKET"]
    description = firehose.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
    assert description["DeliveryStreamType"] == "DirectPut" and description["DeliveryStreamStatus"] == "ACTIVE"
    (destination,) = description["Destinations"]
    assert destination["ExtendedS3DestinationDescription"]["BucketARN"] == f"arn:aws:s3:::{bucket}"
    line = b'{"v":1,"id":"evt_compose_check"}\n'
    answer = firehose.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": line}])
    assert answer["FailedPutCount"] == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="webhooks/").get("Contents", [])]
    assert keys, f"the record did not reach s3://{bucket}/webhooks/"
    bodies = [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]
    assert line in bodies
