"""cache: Redis on the host's address, bounded, nothing persisted, supervised."""

CLI = "redis-cli -h 198.18.0.171 -p 6379 --raw"


def test_answers_on_the_host_address_only(host):
    assert host.check_output(f"{CLI} PING") == "PONG"
    assert host.socket("tcp://198.18.0.171:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening


def test_memory_is_bounded_with_lru_eviction(host):
    assert host.check_output(f"{CLI} CONFIG GET maxmemory").split()[1] == str(64 * 1024 * 1024)
    assert host.check_output(f"{CLI} CONFIG GET maxmemory-policy").split()[1] == "allkeys-lru"


def test_nothing_is_persisted(host):
    assert host.check_output(f"{CLI} CONFIG GET save").split()[1:] == []
    assert host.check_output(f"{CLI} CONFIG GET appendonly").split()[1] == "no"


def test_the_supervised_pid_is_the_server(host):
    pid = host.file("/srv/chaoslab/mol-cache/run/redis.pid").content_string.strip()
    info = host.check_output(f"{CLI} INFO server")
    assert f"process_id:{pid}" in info


def test_redis_runs_as_its_own_unprivileged_user(host):
    pid = int(host.file("/srv/chaoslab/mol-cache/run/redis.pid").content_string.strip())
    assert host.process.get(pid=pid).user == "redis"
