"""docker-compose.yml is valid for a real deployment (no container engine runs here: checked statically)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from common.config import Settings
from fsp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_five_services_exist_with_health_checks():
    assert set(SERVICES) == {"kafka", "redis", "postgres", "worker", "serve"}
    for name in ("kafka", "redis", "postgres"):
        assert SERVICES[name]["healthcheck"]["test"], name
        assert SERVICES[name]["volumes"], f"{name} keeps its data in a volume"
    for dependency in ("kafka", "redis", "postgres"):
        assert SERVICES["worker"]["depends_on"][dependency]["condition"] == "service_healthy"


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.match(r"^\d+(\.\d+)+", tag), f"{name}: {image} is not pinned to a version"
    base = (ROOT / "Dockerfile").read_text().splitlines()[0]
    assert re.match(r"^FROM \S+:\d+\.\d+\.\d+", base), base


def test_kafka_runs_kraft_without_zookeeper():
    env = SERVICES["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in env)


def test_worker_gets_every_setting_the_app_reads_and_a_valid_command():
    env = SERVICES["worker"]["environment"]
    read_by_app = {"KAFKA_BROKER", "REDIS_URL", "FEATURE_PREFIX", "PARTITIONS", "SESSIONS_CAP"}
    assert read_by_app <= set(env)
    assert env["KAFKA_BROKER"].split(":")[0] == "kafka" and "redis://redis:" in env["REDIS_URL"]
    command = SERVICES["worker"]["command"]
    assert command[0] == "fsp"
    args = build_parser().parse_args(command[1:])
    assert args.command == "worker" and set(args.datasets.split(",")) == {"storj", "ucn"}
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2


def test_the_feature_server_reads_the_workers_redis_with_a_valid_command():
    serve = SERVICES["serve"]
    args = build_parser().parse_args(serve["command"][1:])
    assert args.command == "serve" and args.host == "0.0.0.0" and f"{args.port}:{args.port}" in serve["ports"]
    for name in ("REDIS_URL", "FEATURE_PREFIX"):
        assert serve["environment"][name] == SERVICES["worker"]["environment"][name]
    assert "FSP_SERVE_TOKEN" in serve["environment"]
    assert serve["image"] == SERVICES["worker"]["image"] and "/health" in " ".join(serve["healthcheck"]["test"])
    assert serve["depends_on"]["redis"]["condition"] == "service_healthy"


def test_settings_fields_are_all_in_the_compose_file():
    """A new setting must reach the deployment too."""
    env = SERVICES["worker"]["environment"]
    names = {"kafka_broker": "KAFKA_BROKER", "redis_url": "REDIS_URL", "prefix": "FEATURE_PREFIX",
             "partitions": "PARTITIONS", "sessions_cap": "SESSIONS_CAP", "sort_run_rows": "FSP_SORT_RUN_ROWS",
             "sort_dir": "FSP_SORT_DIR", "store": "FSP_STORE", "state_dir": "FSP_STATE_DIR",
             "feature_ttl": "FEATURE_TTL", "report_cache_s": "FSP_REPORT_CACHE_S"}
    assert set(Settings.__dataclass_fields__) == set(names)
    served = SERVICES["serve"]["environment"]
    assert all(names[f] in env or names[f] in served for f in names)


def test_kafka_security_settings_are_in_the_compose_file():
    """Every KAFKA_* security variable the clients read (common/kafka_security.py) reaches the workers."""
    import inspect

    from common import kafka_security

    read = set(re.findall(r'"(KAFKA_[A-Z_]+)"', inspect.getsource(kafka_security.KafkaSecurity.from_env)))
    assert read and read <= set(SERVICES["worker"]["environment"])
    assert not kafka_security.KafkaSecurity.from_env(
        {k: v or "" for k, v in SERVICES["worker"]["environment"].items()}).secured


def test_dockerfile_installs_the_project_and_runs_the_worker():
    text = (ROOT / "Dockerfile").read_text()
    for package in ("contract", "datasets", "replay", "stream", "verify", "fsp", "serving"):
        assert f"COPY {package} {package}" in text
    assert "pip install" in text and shlex.split(text.splitlines()[-1])[0] == "CMD"


def test_workers_against_apache_kafka_do_not_poll():
    """Kafka answers a waiting fetch when data arrives; the 10 ms default is for the embedded broker."""
    wait = int(SERVICES["worker"]["environment"]["KAFKA_FETCH_MAX_WAIT_MS"])
    assert wait >= 100
