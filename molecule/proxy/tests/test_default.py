"""proxy: HAProxy in TCP mode forwards to PostgreSQL and sees the backend up."""

import pytest

ROOT = "/srv/chaoslab/mol-px"
STATE = (
    "import socket; s = socket.socket(socket.AF_UNIX); s.connect('" + ROOT + "/run/haproxy.sock');"
    "s.sendall(b'show servers state\\n'); print(s.recv(65536).decode())"
)


@pytest.fixture()
def proxy(host):
    return host.get_host("ansible://mol-px", ansible_inventory=host.backend.ansible_inventory)


def test_listens_on_the_proxy_address(proxy):
    assert proxy.socket("tcp://198.18.0.122:5432").is_listening


def test_queries_pass_through_to_the_database(proxy):
    out = proxy.check_output(
        "PGPASSWORD=fraiseql-lab psql -X -At -h 198.18.0.122 -U fraiseql -d fraiseql_demo "
        "-c 'SELECT count(*) FROM v_author'"
    )
    assert out == "3"


def test_backend_is_up_on_the_stats_socket(proxy):
    state = proxy.check_output(f'/usr/bin/python3 -c "{STATE}"')
    line = next(line for line in state.splitlines() if " db " in f" {line} ")
    # srv_op_state 2 = running
    assert "198.18.0.121" in line and line.split()[5] == "2", line
