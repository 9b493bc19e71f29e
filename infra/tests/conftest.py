"""Shared fixtures: the pinned tools, the parsed templates, one checkov run per directory, the real
server binary and the pinned moto_server."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from layout_spec import CFN_DASHBOARD, CFN_ECS, CFN_LAMBDA, CFN_MAIN, CFN_SQS, INFRA, ROOT, TERRAFORM_DIR

VENV_BIN = ROOT / ".venv" / "bin"
SERVER_PACKAGE = "stripe-webhook-server"
CHECKOV_BIN = ROOT / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class CheckovRun:
    """One checkov run: a directory, its framework, and Terraform variables to set."""

    directory: Path
    framework: str
    tf_vars: tuple[tuple[str, str], ...] = ()


# The optional Terraform parts are `count = 0` by default, and checkov does not evaluate a resource
# that would not exist: a second run switches them on so their resources are checked too.
TERRAFORM_OPTIONAL_PARTS = (
    ("lambda_enabled", "true"),
    ("ecs_enabled", "true"),
    ("sqs_enabled", "true"),
    ("object_lock_mode", '"COMPLIANCE"'),
    ("reconcile_api_key_secret_arn", '"arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe/reconcile-key-AbCdEf"'),
)
CHECKOV_RUNS = {
    "cloudformation": CheckovRun(INFRA / "cloudformation", "cloudformation"),
    "terraform": CheckovRun(TERRAFORM_DIR, "terraform"),
    "terraform-optional-parts": CheckovRun(TERRAFORM_DIR, "terraform", TERRAFORM_OPTIONAL_PARTS),
}


def _ensure_venvs() -> None:
    """Installs or refreshes both pinned virtual environments (idempotent, quiet when current)."""
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "venv.sh"), "all"], capture_output=True, text=True, timeout=900
    )
    if r.returncode != 0:
        pytest.fail(f"scripts/venv.sh all failed (the pinned Python tools are required):\n{r.stderr}")


@pytest.fixture(scope="session")
def tool_bins() -> dict[str, Path]:
    """Paths of the pinned command-line tools; fails (never skips) when one is missing."""
    _ensure_venvs()
    bins = {"cfn-lint": VENV_BIN / "cfn-lint", "checkov": CHECKOV_BIN}
    for name, path in bins.items():
        if not path.is_file():
            pytest.fail(f"{name} not found at {path}: run `bash scripts/venv.sh all`")
    return bins


@pytest.fixture(scope="session")
def checkov_reports(tool_bins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Runs checkov once per entry of CHECKOV_RUNS (all at once) and returns each JSON report."""
    procs = {}
    for name, run in CHECKOV_RUNS.items():
        args = [
            str(tool_bins["checkov"]),
            "--directory", str(run.directory),
            "--framework", run.framework,
            "--output", "json",
            "--skip-download",  # offline, no platform calls: the default policies only
        ]
        if run.tf_vars:
            var_file = tmp_path_factory.mktemp("checkov") / f"{name}.tfvars"
            var_file.write_text("".join(f"{key} = {value}\n" for key, value in run.tf_vars))
            args += ["--var-file", str(var_file)]
        procs[name] = (run, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports: dict[str, dict[str, Any]] = {}
    for name, (run, proc) in procs.items():
        out, err = proc.communicate(timeout=300)
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            pytest.fail(f"checkov ({name}) printed no JSON report (exit {proc.returncode}):\n{err}\n{out[:2000]}")
        if isinstance(report, list):
            # One entry per framework; we ask for one.
            (report,) = [r for r in report if r.get("check_type") == run.framework]
        assert "results" in report and "summary" in report, f"unexpected checkov report: {str(report)[:2000]}"
        reports[name] = report
    return reports


def load_cfn(path: Path) -> dict[str, Any]:
    """A CloudFormation template with its short-form tags decoded (`!Ref x` -> {"Ref": "x"}) and each
    `Fn::ForEach` of its resources expanded over its list parameter's default (as the
    AWS::LanguageExtensions transform does at deploy time), so tests see plain resources."""
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.load(str(path))
    resources = template.get("Resources", {})
    for key in [k for k in resources if k.startswith("Fn::ForEach::")]:
        identifier, collection, body = resources.pop(key)
        default = template["Parameters"][collection["Ref"]]["Default"]
        for value in (v.strip() for v in default.split(",")):
            for name_template, resource in body.items():
                name = name_template.replace(f"&{{{identifier}}}", "".join(c for c in value if c.isalnum()))
                resources[name] = _substitute(resource, identifier, value)
    return template


NO_VALUE = {"Ref": "AWS::NoValue"}


def cfn_conditions(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, bool]:
    """Every condition of a template, evaluated as CloudFormation would with these parameter values
    (the others at their defaults)."""
    values = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}
    unknown = set(parameters) - set(values)
    assert not unknown, f"not parameters of the template: {sorted(unknown)}"
    values |= parameters
    conditions = template.get("Conditions", {})
    evaluated: dict[str, bool] = {}

    def operand(node: Any) -> str:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            value = values[node["Ref"]]
            return ",".join(value) if isinstance(value, list) else str(value)
        assert not isinstance(node, (dict, list)), f"unexpected operand in a condition: {node}"
        return str(node)

    def truth(node: Any) -> bool:
        ((fn, arg),) = node.items()
        if fn == "Fn::Equals":
            left, right = arg
            return operand(left) == operand(right)
        if fn == "Fn::Not":
            (inner,) = arg
            return not truth(inner)
        if fn == "Fn::And":
            return all(truth(inner) for inner in arg)
        if fn == "Fn::Or":
            return any(truth(inner) for inner in arg)
        if fn == "Condition":
            return condition(arg)
        raise AssertionError(f"unexpected condition function {fn}")

    def condition(name: str) -> bool:
        if name not in evaluated:
            evaluated[name] = truth(conditions[name])
        return evaluated[name]

    return {name: condition(name) for name in conditions}


def render_cfn(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template as CloudFormation deploys it with these parameter values: resources and outputs
    whose condition is false left out, each `Fn::If` replaced by its branch, `AWS::NoValue` removed
    from lists and properties. Other intrinsics (Ref, Fn::ImportValue, ...) stay as they are."""
    conditions = cfn_conditions(template, parameters or {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return walk(yes if conditions[name] else no)
            return {k: w for k, w in ((k, walk(v)) for k, v in node.items()) if w != NO_VALUE}
        if isinstance(node, list):
            return [w for w in (walk(v) for v in node) if w != NO_VALUE]
        return node

    rendered = {k: v for k, v in template.items() if k != "Conditions"}
    for section in ("Resources", "Outputs"):
        kept = {n: r for n, r in template.get(section, {}).items() if "Condition" not in r or conditions[r["Condition"]]}
        rendered[section] = walk({n: {k: v for k, v in r.items() if k != "Condition"} for n, r in kept.items()})
    return rendered


def _substitute(node: Any, identifier: str, value: str) -> Any:
    """`node` with every `{"Ref": identifier}` replaced by `value`."""
    if node == {"Ref": identifier}:
        return value
    if isinstance(node, dict):
        return {k: _substitute(v, identifier, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, identifier, value) for v in node]
    return node


@pytest.fixture(scope="session")
def cfn_main() -> dict[str, Any]:
    return load_cfn(CFN_MAIN)


@pytest.fixture(scope="session")
def cfn_lambda() -> dict[str, Any]:
    return load_cfn(CFN_LAMBDA)


@pytest.fixture(scope="session")
def cfn_sqs() -> dict[str, Any]:
    return load_cfn(CFN_SQS)


@pytest.fixture(scope="session")
def cfn_ecs() -> dict[str, Any]:
    return load_cfn(CFN_ECS)


@pytest.fixture(scope="session")
def cfn_dashboard() -> dict[str, Any]:
    return load_cfn(CFN_DASHBOARD)


_LOWEST_PORT = 10_000
_next_port = itertools.count(os.getpid() * 7_919 + time.time_ns() // 1_000)


def free_port() -> int:
    """A TCP port free on the loopback interface now, from below the kernel's ephemeral range.

    A port bind(0) handed out and released lies in the ephemeral range, where any client socket can
    take it as its local port before the server binds it; below the range only a listener can. A
    process-wide cursor never hands out the same port twice, and each candidate is checked by binding.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    span = ephemeral_low - _LOWEST_PORT
    if span < 1_000:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(span):
        port = _LOWEST_PORT + next(_next_port) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_LOWEST_PORT}..{ephemeral_low}")


def log_tail(path: Path) -> str:
    """The end of a log file, for a failure message."""
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


class Server:
    """The real server, started (and waited for until `/health` answers 200) and stopped with
    SIGTERM (a graceful exit must be 0) by a `with` block. It listens on loopback, on a free
    `PORT` and a free `METRICS_ADDR` port; `env` adds to and overrides that base (the secret,
    the sink, ...); its log is `work/server.log`."""

    def __init__(self, binary: Path, work: Path, env: dict[str, str], preexec: Any = None) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log = work / "server.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
            "RUST_LOG": "warn",
        } | env
        self.binary, self.preexec = binary, preexec

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary)], env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{log_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"/health did not answer 200 within 30 s:\n{log_tail(self.log)}")
            time.sleep(0.05)

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"the server did not exit within 30 s of SIGTERM:\n{log_tail(self.log)}")
            if exc[0] is None:
                assert code == 0, f"graceful shutdown must exit 0, got {code}:\n{log_tail(self.log)}"


@pytest.fixture(scope="session")
def server_binary() -> Path:
    """The real stripe-webhook-server (debug), brought up to date once per session by `cargo test
    --workspace --no-run`: the build ./scripts/test's Rust tests have just made, so there it compiles
    nothing (`cargo build -p stripe-webhook-server` would resolve the server's features alone, unlike
    the workspace's, and compile its whole dependency tree a second time). Run alone, it builds the
    workspace's tests once."""
    command = ["cargo", "test", "--workspace", "--no-run"]
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if build.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed (exit {build.returncode}):\n{build.stderr[-6000:]}")
    meta = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    )
    binary = Path(json.loads(meta.stdout)["target_directory"]) / "debug" / SERVER_PACKAGE
    assert binary.is_file(), f"cargo built {SERVER_PACKAGE} but {binary} does not exist"
    return binary


@pytest.fixture(scope="session")
def moto_endpoint(tool_bins: dict[str, Path]) -> Iterator[str]:
    """The pinned moto_server (the same version as compose's image) on a free loopback port."""
    binary = VENV_BIN / "moto_server"
    if not binary.is_file():
        pytest.fail(f"{binary} not found: run `bash scripts/venv.sh all`")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not answer within 60 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Terraform:
    """Every *.tf file of infra/terraform merged by block kind."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        assert kind in self.resources and name in self.resources[kind], f"missing resource {kind}.{name}"
        return self.resources[kind][name]

    def resolve(self, value: Any) -> Any:
        """Replaces a whole-string `${local.x}` or `${var.x}` by the local's value or the variable's default."""
        while isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            ref = value[2:-1]
            if ref.startswith("local.") and ref[6:] in self.locals:
                value = self.locals[ref[6:]]
            elif ref.startswith("var.") and ref[4:] in self.variables:
                value = self.variables[ref[4:]]["default"]
            else:
                break
        return value


def load_terraform(directory: Path = TERRAFORM_DIR) -> Terraform:
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=True)
    tf = Terraform()
    files = sorted(directory.glob("*.tf"))
    assert files, f"no *.tf files in {directory}"
    for path in files:
        with path.open() as f:
            doc = hcl2.load(f, serialization_options=options)
        for block in doc.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    assert name not in tf.resources.get(kind, {}), f"duplicate resource {kind}.{name}"
                    tf.resources.setdefault(kind, {})[name] = body
        for block in doc.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    tf.data.setdefault(kind, {})[name] = body
        for block in doc.get("variable", []):
            tf.variables.update(block)
        for block in doc.get("output", []):
            tf.outputs.update(block)
        for block in doc.get("locals", []):
            tf.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
        tf.terraform.extend(doc.get("terraform", []))
    return tf


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    return load_terraform()
