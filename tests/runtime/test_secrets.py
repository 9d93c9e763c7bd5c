import pytest

from graphpack import GraphpackError
from graphpack.runtime.secrets import SecretsStore, normalize_source


def test_env_file_dir_and_order(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "from-env")
    env_file = tmp_path / "s.env"
    env_file.write_text("# comment\nAPI_KEY=from-file\nDB_PASS='pw'\n")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "TOKEN").write_text("tok\n")
    store = SecretsStore([normalize_source("env", "API_KEY"), normalize_source("file", env_file),
                          normalize_source("file", mounted)])
    assert store.get("API_KEY") == "from-env"
    assert store.get("DB_PASS") == "pw"
    assert store.get("TOKEN") == "tok"
    assert store.get("UNKNOWN") is None
    assert store.env_names() == ["API_KEY"]


def test_env_mapping_and_unknown_kind(monkeypatch):
    monkeypatch.setenv("REAL_VAR", "v")
    assert SecretsStore([normalize_source("env", {"key": "REAL_VAR"})]).get("key") == "v"
    with pytest.raises(GraphpackError, match="unknown kind 'vault'"):
        normalize_source("vault", "x")
