"""Speaker labels are opt-in in every deploy file (issue #17): compose, Kubernetes, systemd.

The speaker worker itself is checked with the others (tests/test_deploy.py, tests/test_systemd.py:
health, memory, read-only models, probes, hardening); here: that it runs only when asked for and
that the gateway then knows its address, and only then.
"""

from __future__ import annotations

from services import launcher as launch
from tests.test_deploy import K8S, _by, _containers, _env, compose_config, kustomize_build
from tests.test_systemd import SYSTEMD, UNITS, _unit

SPEAKER_PORT = launch.TOPOLOGY["speaker"]["port"]


def test_compose_runs_the_speaker_worker_only_in_its_profile():
    default = compose_config()["services"]
    assert "speaker" not in default
    assert default["gateway"]["environment"]["SPEAKER_ADDRESS"] == ""  # empty is unset: no speaker labels
    switched = compose_config({"SPEAKER_ADDRESS": f"dns:///speaker:{SPEAKER_PORT}"}, profiles=("speaker",))["services"]
    assert switched["speaker"]["command"] == ["python", "-m", "services.speaker.server"]
    assert switched["gateway"]["environment"]["SPEAKER_ADDRESS"] == f"dns:///speaker:{SPEAKER_PORT}"
    assert "speaker" not in switched["gateway"]["depends_on"]  # the gateway never waits for an optional worker


def test_k8s_base_holds_the_speaker_worker_at_zero_replicas_and_the_overlay_turns_it_on():
    base = kustomize_build(K8S / "base")
    overlay = kustomize_build(K8S / "overlays" / "speaker")
    base_deployments, overlay_deployments = _by(base, "Deployment"), _by(overlay, "Deployment")
    assert base_deployments["speaker"]["spec"]["replicas"] == 0
    assert "SPEAKER_ADDRESS" not in _env(_containers(base_deployments["gateway"])[0])
    assert overlay_deployments["speaker"]["spec"]["replicas"] == 1
    service = _by(overlay, "Service")["speaker"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == SPEAKER_PORT
    gateway = _env(_containers(overlay_deployments["gateway"])[0])
    namespace = service["metadata"]["namespace"]
    assert gateway["SPEAKER_ADDRESS"] == f"dns:///speaker.{namespace}.svc.cluster.local:{SPEAKER_PORT}"
    # nothing else changes
    assert {k: v for k, v in gateway.items() if k != "SPEAKER_ADDRESS"} == _env(
        _containers(base_deployments["gateway"])[0])
    for name in set(base_deployments) - {"speaker", "gateway"}:
        assert overlay_deployments[name] == base_deployments[name], name


def test_systemd_speaker_unit_joins_the_target_only_when_enabled():
    target = _unit(SYSTEMD / "speech-analysis.target")
    assert UNITS["speaker"].name not in target["Unit"]["Wants"].split()
    unit = _unit(UNITS["speaker"])
    assert unit["Install"]["WantedBy"] == "speech-analysis.target"  # systemctl enable links it in
    assert "SPEAKER_ADDRESS=127.0.0.1:50054" in UNITS["speaker"].read_text()  # says how to point the gateway
