"""Secrets end up as references: no output file holds a secret value."""
from __future__ import annotations

import yaml

from .conftest import DESIGN, read_tree, run_build, write_project

TOKEN = "s3cr3t-t0ken-9f8e7d6c5b4a"
FILE_SECRET = "file-secret-0a1b2c3d4e5f"


def test_no_secret_value_in_any_output_file(tmp_path, monkeypatch):
    secrets_dir = tmp_path / "mounted"
    secrets_dir.mkdir()
    (secrets_dir / "DB_PASSWORD").write_text(FILE_SECRET)
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("OTHER_TOKEN", TOKEN + "-other")
    source = write_project(tmp_path / "src", DESIGN + f'''
fn.with_secrets("env", ["API_TOKEN"])
fn.with_secrets("env", {{"other": "OTHER_TOKEN"}})
fn.with_secrets("file", {str(secrets_dir)!r})
fn.set_env("LOG_LEVEL", "debug")
''', QUEUE="s3://bucket/q1", SHARDS=None)
    out = tmp_path / "out"
    result = run_build("-f", str(source), "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    assert TOKEN not in result.stdout and FILE_SECRET not in result.stdout
    files = read_tree(out)
    assert len(files) > 20
    for path, (data, _) in files.items():
        for value in (TOKEN, FILE_SECRET):
            assert value.encode() not in data, f"{value} leaked into {path}"
    for function in ("recommender", "enricher"):
        spec = yaml.safe_load((out / function / "function.yaml").read_text())["spec"]
        env = {e["name"]: e for e in spec["env"]}
        for name in ("API_TOKEN", "OTHER_TOKEN"):
            assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": name}}}
        assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "debug"}
        assert spec["volumes"] == [{
            "volume": {"name": "graphpack-secrets-2", "secret": {"secretName": "shop-secrets"}},
            "volumeMount": {"name": "graphpack-secrets-2", "mountPath": str(secrets_dir), "readOnly": True}}]
