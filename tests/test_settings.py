"""Settings from the environment: production secrets have no defaults, `check --deploy` is clean, the database pool."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_ALLOWED_HOSTS="chat.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_check_deploy_is_clean():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="a-long-random-production-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="chat.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- PostgreSQL connection pool (no server needed: the pool opens on first use) ----


def database_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """The production settings' database entry for this environment, as JSON on stdout."""
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.db import connection\n"
        "db = connection.settings_dict\n"
        "pool = connection.pool if connection.vendor == 'postgresql' else None\n"
        "print(json.dumps({'pool': db['OPTIONS'].get('pool'), 'conn_max_age': db['CONN_MAX_AGE'],\n"
        "    'health_checks': db['CONN_HEALTH_CHECKS'], 'pool_max_size': pool.max_size if pool else None}))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "DB_POOL", "CONN_"))}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            "DATABASE_URL": "postgres://chat@db.example.com:5432/chat",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgresql_uses_a_bounded_pool_by_default():
    result = database_settings()
    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)
    assert db["pool"] == {"min_size": 2, "max_size": 20, "timeout": 5.0, "reconnect_timeout": 5.0}
    # Django refuses a pool with persistent connections, and with health checks
    # on it gives the pool psycopg_pool's check_connection (heals a restart).
    assert db["conn_max_age"] == 0 and db["health_checks"] is True
    assert db["pool_max_size"] == 20  # psycopg_pool is installed and takes the options


def test_pool_sizes_come_from_the_environment():
    result = database_settings(DB_POOL_MAX_SIZE="4", DB_POOL_MIN_SIZE="1", DB_POOL_TIMEOUT="2.5")
    assert result.returncode == 0, result.stderr
    pool = json.loads(result.stdout)["pool"]
    assert (pool["min_size"], pool["max_size"], pool["timeout"]) == (1, 4, 2.5)


def test_pool_off_falls_back_to_per_request_connections():
    result = database_settings(DB_POOL_MAX_SIZE="0", CONN_MAX_AGE="30")
    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)
    assert db["pool"] is None and db["conn_max_age"] == 30


def test_inconsistent_pool_settings_refuse_to_start():
    too_small = database_settings(DB_POOL_MAX_SIZE="4", DB_POOL_MIN_SIZE="5")
    assert too_small.returncode != 0 and "DB_POOL_MIN_SIZE" in too_small.stderr
    persistent = database_settings(CONN_MAX_AGE="60")
    assert persistent.returncode != 0 and "CONN_MAX_AGE" in persistent.stderr


def test_sqlite_has_no_pool():
    result = database_settings(DATABASE_URL="sqlite:///unused.sqlite3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pool"] is None


# --- where uploads are stored --------------------------------------------------------


def storage_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """The production settings' default storage for this environment, as JSON on stdout (nothing is contacted)."""
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "print(json.dumps(settings.STORAGES['default']))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
            "DJANGO_ALLOWED_HOSTS": "chat.example.com",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_uploads_stay_in_a_local_folder_by_default():
    result = storage_settings()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_an_s3_bucket_from_the_environment():
    result = storage_settings(
        DJANGO_STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="chat-files",
        AWS_S3_ENDPOINT_URL="https://minio.example.com",
        AWS_S3_REGION_NAME="eu-west-1",
    )
    assert result.returncode == 0, result.stderr
    storage = json.loads(result.stdout)
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["bucket_name"] == "chat-files"
    assert storage["OPTIONS"]["endpoint_url"] == "https://minio.example.com"
    assert storage["OPTIONS"]["region_name"] == "eu-west-1"
    # No credentials in the settings: boto3 reads them from its own environment.
    assert not any("key" in name or "secret" in name for name in storage["OPTIONS"])


def test_s3_without_a_bucket_or_an_unknown_backend_refuses_to_start():
    assert "AWS_STORAGE_BUCKET_NAME" in storage_settings(DJANGO_STORAGE_BACKEND="s3").stderr
    refused = storage_settings(DJANGO_STORAGE_BACKEND="ftp")
    assert refused.returncode != 0 and "DJANGO_STORAGE_BACKEND" in refused.stderr
