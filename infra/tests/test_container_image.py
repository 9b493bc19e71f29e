"""The container image, linted and built and run for real.

The Dockerfile passes hadolint and checkov's Dockerfile checks, and builds for the builder's own
architecture (no hard-coded target). `scripts/image` builds the image offline (the server and the
operator CLI from one static cargo build, fed to the `runtime` stage), and podman runs it (runc,
host network, explicit ulimits: crun cannot set rlimits or handle the cgroup mode on these
machines): it runs as a non-root user, answers `/health`, archives a signed webhook into a mounted
volume, its HEALTHCHECK command passes, `podman stop` (SIGTERM) seals the segment and exits 0, its
logs are JSON without colour codes, and the CLI shipped in it (`--entrypoint /stripe-webhook`)
verifies that archive; without a volume the server warns that the archive would be lost.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port
from layout_spec import ROOT

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_SCRIPT = ROOT / "scripts" / "image"
IMAGE = "stripe-webhook-server:local"
CLI = "/stripe-webhook"
SECRET = "whsec_image_test_secret"
RUNTIME_USER = "65532:65532"


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def podman() -> str:
    path = shutil.which("podman")
    if path is None:
        pytest.fail("podman is required (scripts/test installs Debian's podman and runc)")
    if shutil.which("runc") is None:
        pytest.fail("runc is required (scripts/test installs Debian's podman and runc)")
    return path


def test_hadolint_is_clean(tool_bins: dict[str, Path]) -> None:
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    if not hadolint.is_file():
        pytest.fail(f"hadolint not found at {hadolint}: run `bash scripts/venv.sh all`")
    r = run([str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)], check=False)
    assert r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}"


def test_checkov_dockerfile_checks_are_clean(tool_bins: dict[str, Path]) -> None:
    r = run(
        [str(tool_bins["checkov"]), "--file", str(DOCKERFILE), "--framework", "dockerfile",
         "--output", "json", "--skip-download"],
        timeout=300,
        check=False,
    )
    report = json.loads(r.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert summary["passed"] >= 5, f"checkov ran too few Dockerfile checks: {summary}"
    assert not failed, "checkov Dockerfile failures:\n" + "\n".join(failed)


def test_the_runtime_stage_is_minimal_non_root_and_self_checking() -> None:
    text = DOCKERFILE.read_text()
    runtime = text[text.index("AS runtime"):]
    assert "FROM scratch AS runtime" in text
    assert f"USER {RUNTIME_USER}" in runtime
    assert 'HEALTHCHECK' in runtime and '"/stripe-webhook-server", "healthcheck"' in runtime
    assert "EXPOSE 3001" in runtime and "LOG_FORMAT=json" in runtime
    assert "/etc/ssl/certs/ca-certificates.crt" in runtime
    # The operator CLI ships beside the server, from the same build.
    assert f"COPY --from=build /out/stripe-webhook {CLI}" in runtime
    build = text[: text.index("AS runtime")]
    assert "-p stripe-webhook-server -p stripe-webhook" in build
    # Built for the builder's architecture: no target triple is written down, in either build.
    for path in (DOCKERFILE, IMAGE_SCRIPT):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"(x86_64|aarch64)-unknown", code), f"{path.name} hard-codes a target triple"
        assert "rustc -vV" in code, f"{path.name} does not take the host triple from rustc"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in ["target", ".git", ".env"]:
        assert entry in ignored, f".dockerignore lacks {entry}"


@pytest.fixture(scope="module")
def image() -> str:
    podman()
    env = {**os.environ, "IMAGE_PROFILE": os.environ.get("IMAGE_PROFILE", "dev")}
    r = run(["bash", str(ROOT / "scripts" / "image")], timeout=1800, env=env, cwd=ROOT)
    assert r.stdout.strip().splitlines()[-1] == IMAGE, r.stdout
    return IMAGE


class Container:
    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        r = run([podman(), "logs", self.name], check=False)
        return r.stdout + r.stderr

    def inspect(self, template: str) -> str:
        return run([podman(), "inspect", self.name, "--format", template]).stdout.strip()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        pytest.fail(f"the container never answered /health 200; logs:\n{self.logs()}")


# runc, and explicit ulimits: crun cannot set rlimits or handle the cgroup mode on these machines.
RUN_FLAGS = ["--runtime", "runc", "run", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=1000:1000"]


def run_cli(image: str, args: list[str], volume: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`podman run --entrypoint /stripe-webhook IMAGE ARGS…`, the archive volume mounted read-only."""
    cmd = [podman(), *RUN_FLAGS, "--rm", "--network", "none", "--entrypoint", CLI]
    if volume is not None:
        cmd += ["-v", f"{volume}:/archive:ro"]
    for name, value in (env or {}).items():
        cmd += ["-e", f"{name}={value}"]
    return run(cmd + [image, *args], timeout=120, check=False)


def start_container(image: str, name: str, volume: Path | None) -> Container:
    port = free_port()
    cmd = [
        podman(), *RUN_FLAGS, "-d", "--name", name, "--network", "host",
        "-e", f"STRIPE_WEBHOOK_SECRET={SECRET}", "-e", f"PORT={port}", "-e", "METRICS_ADDR=off",
    ]
    if volume is not None:
        cmd += ["-v", f"{volume}:/archive"]
    run([podman(), "rm", "-f", name], check=False)
    run(cmd + [image])
    container = Container(name, port)
    container.wait_healthy()
    return container


@pytest.fixture
def archive_volume(tmp_path: Path) -> Iterator[Path]:
    volume = tmp_path / "archive"
    volume.mkdir()
    os.chown(volume, 65532, 65532)  # the image's user owns the mounted archive
    yield volume


def signed_post(container: Container, body: bytes) -> tuple[int, str]:
    t = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        container.url("/webhook/stripe"),
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={mac}"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, r.read().decode()


def test_the_image_serves_archives_checks_itself_and_seals_on_sigterm(image: str, archive_volume: Path) -> None:
    container = start_container(image, "swh-image-test", archive_volume)
    try:
        # Non-root, from the image's configuration and in the running process.
        assert container.inspect("{{.Config.User}}") == RUNTIME_USER
        pid = container.inspect("{{.State.Pid}}")
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["65532"] * 4, uid_line

        with urllib.request.urlopen(container.url("/health"), timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok", "sink": "file", "durable": True}

        body = (ROOT / "fixtures" / "events" / "charge.succeeded.json").read_bytes()
        assert signed_post(container, body) == (200, '{"received":true}')

        # The image's HEALTHCHECK command, run by the engine inside the container.
        check = run([podman(), "healthcheck", "run", container.name], check=False)
        assert check.returncode == 0, f"HEALTHCHECK failed: {check.stdout}{check.stderr}"

        run([podman(), "stop", "--time", "30", container.name], timeout=60)
        assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
        sealed = list(archive_volume.glob("webhooks/year=*/month=*/day=*/*.ndjson.gz"))
        assert len(sealed) == 1, sorted(p.name for p in archive_volume.rglob("*"))
        assert not list(archive_volume.glob("webhooks/**/*.ndjson")), "an unsealed segment is left"
        record = json.loads(gzip.decompress(sealed[0].read_bytes()))
        assert record["raw"].encode() == body

        logs = container.logs()
        assert "\x1b" not in logs, "colour codes in container logs"
        server_lines = [line for line in logs.splitlines() if line.startswith("{")]
        assert any(json.loads(line).get("message") == "sink flushed and closed; bye" for line in server_lines), logs
    finally:
        run([podman(), "rm", "-f", container.name], check=False)

    # The CLI shipped in the image proves the archive the server wrote: the secret from the
    # environment, as an operator's task or shell would pass it.
    verify = run_cli(image, ["verify", "/archive"], archive_volume, {"STRIPE_WEBHOOK_SECRET": SECRET})
    output = verify.stdout + verify.stderr
    assert verify.returncode == 0, f"stripe-webhook verify exited {verify.returncode}:\n{output}"
    assert re.search(r"^verified: 1\b", output, re.MULTILINE), output
    # With the wrong secret the same record fails: the check above proves something.
    wrong = run_cli(image, ["verify", "/archive", "--secret", "whsec_not_the_archive_secret"], archive_volume)
    assert wrong.returncode == 1, f"verify with a wrong secret exited {wrong.returncode}:\n{wrong.stdout}{wrong.stderr}"
    assert re.search(r"^FAIL\t", wrong.stdout, re.MULTILINE), wrong.stdout + wrong.stderr


def test_the_image_ships_the_operator_cli(image: str) -> None:
    r = run_cli(image, ["--help"])
    assert r.returncode == 0, f"stripe-webhook --help exited {r.returncode}:\n{r.stdout}{r.stderr}"
    for command in ("verify", "replay", "reconcile", "cat", "stats"):
        assert re.search(rf"^  {command}\b", r.stdout, re.MULTILINE), f"--help lacks {command}:\n{r.stdout}"


def test_without_a_volume_the_server_warns_that_the_archive_is_ephemeral(image: str) -> None:
    container = start_container(image, "swh-image-ephemeral", None)
    try:
        logs = container.logs()
        assert "LOST when the container is replaced" in logs, logs
    finally:
        run([podman(), "rm", "-f", container.name], check=False)
