"""postgresql: a cluster on the host's address, app login over TCP, the demo schema."""

ROOT = "/srv/chaoslab/mol-pg"
PSQL_APP = "PGPASSWORD=fraiseql-lab psql -X -At -h 198.18.0.111 -U fraiseql -d fraiseql_demo -c"


def test_listens_on_the_host_address_only(host):
    assert host.socket("tcp://198.18.0.111:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_postmaster_is_the_supervised_program(host):
    pidfile = host.file(f"{ROOT}/run/postgresql.pid").content_string.strip()
    postmaster = host.file(f"{ROOT}/data/postgresql/postmaster.pid").content_string.split()[0]
    assert pidfile == postmaster
    assert host.process.get(pid=int(postmaster)).user == "postgres"


def test_app_role_reads_the_seeded_demo_views(host):
    assert host.check_output(f'{PSQL_APP} "SELECT count(*) FROM v_post"') == "200"
    assert host.check_output(f'{PSQL_APP} "SELECT count(*) FROM v_author"') == "3"
    nested = host.check_output(
        f"""{PSQL_APP} "SELECT data->'author'->>'name' FROM v_post ORDER BY created_at LIMIT 1" """
    )
    assert nested == "Grace Hopper"


def test_both_mutation_flavours_exist(host):
    out = host.check_output(
        f"""{PSQL_APP} "SELECT string_agg(n.nspname || '.' || p.proname, ',' ORDER BY 1)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('app', 'app_v05')" """
    )
    assert set(out.split(",")) == {
        "app.increment_counter",
        "app.record_op",
        "app.transfer",
        "app_v05.increment_counter",
        "app_v05.record_op",
        "app_v05.transfer",
    }


def test_pg_stat_statements_is_loaded(host):
    assert host.check_output(f'{PSQL_APP} "SELECT count(*) >= 0 FROM pg_stat_statements"') == "t"


def test_wrong_password_is_refused(host):
    cmd = host.run(
        "PGPASSWORD=wrong psql -X -At -h 198.18.0.111 -U fraiseql -d fraiseql_demo -c 'SELECT 1'"
    )
    assert cmd.rc != 0
    assert "password authentication failed" in cmd.stderr
