"""Choosing the emotion model in the deploy files (issue #19): compose and the k8s overlay."""

from __future__ import annotations

from tests.test_deploy import K8S, _by, _containers, _env, compose_config, kustomize_build


def test_compose_emotion_model_defaults_to_speechbrain_and_is_switchable():
    default = compose_config()["services"]["emotion"]["environment"]
    assert default["EMOTION_MODEL"] == "speechbrain"
    switched = compose_config({"EMOTION_MODEL": "emotion2vec"})["services"]["emotion"]["environment"]
    assert switched["EMOTION_MODEL"] == "emotion2vec"


def test_k8s_emotion2vec_overlay_switches_only_the_emotion_model():
    base = {name: _env(_containers(d)[0]) for name, d in _by(kustomize_build(K8S / "base"), "Deployment").items()}
    overlay = {name: _env(_containers(d)[0])
               for name, d in _by(kustomize_build(K8S / "overlays" / "emotion2vec"), "Deployment").items()}
    assert base["emotion"]["EMOTION_MODEL"] == "speechbrain"
    assert overlay["emotion"]["EMOTION_MODEL"] == "emotion2vec"
    assert {k: v for k, v in overlay["emotion"].items() if k != "EMOTION_MODEL"} == {
        k: v for k, v in base["emotion"].items() if k != "EMOTION_MODEL"}
    assert {n: e for n, e in overlay.items() if n != "emotion"} == {n: e for n, e in base.items() if n != "emotion"}
