"""Redis access control: the pipeline runs as a writer limited to its prefix; readers can only read."""
from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from datasets.storj.generate import generate_storj
from fsp.stack import start_redis

pytestmark = pytest.mark.integration

PREFIX = "acl-test:"


@pytest.fixture
def acl_redis():
    """A Redis of its own with a writer limited to PREFIX and a read-only reader."""
    server = start_redis()
    admin = redis.Redis.from_url(server.address)
    host_port = server.address.split("//", 1)[1].rsplit("/", 1)[0]
    admin.execute_command("ACL", "SETUSER", "writer", "on", ">writer-pw", f"~{PREFIX}*", "-@all", "+@read",
                          "+@write", "+@scripting", "+ping", "-flushall", "-flushdb")
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", f"~{PREFIX}*", "-@all", "+@read",
                          "+ping")
    admin.execute_command("ACL", "SETUSER", "default", "off")
    yield {"writer": f"redis://writer:writer-pw@{host_port}/0", "reader": f"redis://reader:reader-pw@{host_port}/0",
           "wrong": f"redis://writer:not-the-password@{host_port}/0"}
    server.stop()


def test_pipeline_runs_as_prefix_limited_writer_and_readers_only_read(pipeline_factory, acl_redis, tmp_path):
    pipeline = pipeline_factory("storj", redis=acl_redis["writer"], prefix=PREFIX)
    folder = str(tmp_path / "dump")
    generate_storj(folder, seed=51, scale=0.01)
    pipeline.replay("storj", folder, timeout=90)
    reader = redis.Redis.from_url(acl_redis["reader"])
    users = reader.smembers(f"{PREFIX}entities:storj:user")
    assert len(users) > 10
    some = next(iter(users)).decode()
    assert reader.hget(f"{PREFIX}feat:storj:user:{some}", "tier") in (b'"free"', b'"paid"')
    for command in (("HSET", f"{PREFIX}feat:storj:user:{some}", "tier", '"x"'), ("FLUSHALL",),
                    ("CONFIG", "GET", "maxmemory"), ("GET", "someone-else:key")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.execute_command(*command)
    writer = redis.Redis.from_url(acl_redis["writer"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.set("outside-the-prefix", "1")
    mismatches, _ = pipeline.verify("storj", folder)
    assert [str(m) for m in mismatches] == []


def test_wrong_password_fails_once_with_a_clear_error(acl_redis):
    result = subprocess.run([sys.executable, "-m", "fsp", "worker", "--datasets", "storj"],
                            env={"KAFKA_BROKER": "127.0.0.1:1", "REDIS_URL": acl_redis["wrong"], "PATH": "/usr/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Redis refused the credentials in REDIS_URL" in result.stderr
