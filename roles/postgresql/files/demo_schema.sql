-- FraiseQL demo schema for the chaos lab. Idempotent: safe to apply again.
-- Tables (tb_*) hold the truth; views (v_*) expose id + JSONB data the way FraiseQL
-- reads them; mutations are PL/pgSQL functions. Two mutation flavours share one core:
--   app.*      -> app.mutation_response (8 columns)  for FraiseQL 1.9.x
--   app_v05.*  -> app_v05.mutation_result (6 columns) for FraiseQL 0.5.3
-- Load operations beyond the list/nested/ledger/counter ones: core.slow_query (a
-- statement of a chosen duration), v_item (thousands of rows for large results) and the
-- accounts of the isolation experiments (core.transfer, core.account_snapshot).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE SCHEMA IF NOT EXISTS core;
CREATE SCHEMA IF NOT EXISTS app;
CREATE SCHEMA IF NOT EXISTS app_v05;

CREATE TABLE IF NOT EXISTS core.tb_author (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    bio         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS core.tb_post (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    author_id   uuid NOT NULL REFERENCES core.tb_author(id),
    title       text NOT NULL,
    body        text NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    published   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tb_post_author_idx ON core.tb_post (author_id);
CREATE INDEX IF NOT EXISTS tb_post_created_idx ON core.tb_post (created_at);

-- One row per acknowledged client operation: op_id is chosen by the client, so a
-- retried or duplicated request can never write twice and the lab can prove which
-- acknowledged writes exist.
CREATE TABLE IF NOT EXISTS core.tb_ledger (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    op_id       text NOT NULL UNIQUE,
    client      text NOT NULL,
    amount      integer NOT NULL,
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    backend_pid integer NOT NULL DEFAULT pg_backend_pid()
);

CREATE TABLE IF NOT EXISTS core.tb_counter (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    value       bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Large result sets: fixed rows (demo_seed.sql), read only.
CREATE TABLE IF NOT EXISTS core.tb_item (
    id          uuid PRIMARY KEY,
    n           integer NOT NULL UNIQUE,
    name        text NOT NULL,
    payload     text NOT NULL
);

-- Isolation experiments. Every scenario attempt opens its own group of accounts (the
-- load driver names it), so attempts never share balances. `initial` keeps what the
-- account was opened with: the ground truth needs no outside knowledge.
CREATE TABLE IF NOT EXISTS core.tb_account (
    grp         text NOT NULL,
    name        text NOT NULL,
    balance     bigint NOT NULL,
    initial     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (grp, name)
);

-- One row per committed transfer, keyed by a client-chosen op id like the ledger. A
-- withdrawal (to_name NULL) takes money out of the group.
CREATE TABLE IF NOT EXISTS core.tb_transfer (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    op_id       text NOT NULL UNIQUE,
    grp         text NOT NULL,
    from_name   text NOT NULL,
    to_name     text,
    amount      bigint NOT NULL,
    isolation   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    backend_pid integer NOT NULL DEFAULT pg_backend_pid()
);
CREATE INDEX IF NOT EXISTS tb_transfer_grp_idx ON core.tb_transfer (grp);

CREATE OR REPLACE VIEW public.v_author AS
SELECT a.id,
       jsonb_build_object(
           'id', a.id, 'name', a.name, 'email', a.email, 'bio', a.bio,
           'created_at', a.created_at,
           'post_count', (SELECT count(*) FROM core.tb_post p WHERE p.author_id = a.id)
       ) AS data
FROM core.tb_author a;

-- Nested: every post embeds its author.
CREATE OR REPLACE VIEW public.v_post AS
SELECT p.id, p.author_id, p.published, p.created_at,
       jsonb_build_object(
           'id', p.id, 'title', p.title, 'body', p.body, 'tags', to_jsonb(p.tags),
           'published', p.published, 'created_at', p.created_at,
           'author', jsonb_build_object('id', a.id, 'name', a.name, 'email', a.email)
       ) AS data
FROM core.tb_post p JOIN core.tb_author a ON a.id = p.author_id;

CREATE OR REPLACE VIEW public.v_ledger AS
SELECT l.id, l.op_id, l.client,
       jsonb_build_object('id', l.id, 'op_id', l.op_id, 'client', l.client,
                          'amount', l.amount, 'note', l.note, 'created_at', l.created_at) AS data
FROM core.tb_ledger l;

CREATE OR REPLACE VIEW public.v_counter AS
SELECT c.id, c.name,
       jsonb_build_object('id', c.id, 'name', c.name, 'value', c.value,
                          'updated_at', c.updated_at) AS data
FROM core.tb_counter c;

CREATE OR REPLACE VIEW public.v_item AS
SELECT i.id, i.n,
       jsonb_build_object('id', i.id, 'n', i.n, 'name', i.name, 'payload', i.payload) AS data
FROM core.tb_item i;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = 'app' AND t.typname = 'mutation_response') THEN
        CREATE TYPE app.mutation_response AS (
            status text, message text, entity_id text, entity_type text, entity jsonb,
            updated_fields text[], cascade jsonb, metadata jsonb);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = 'app_v05' AND t.typname = 'mutation_result') THEN
        CREATE TYPE app_v05.mutation_result AS (
            id uuid, updated_fields text[], status text, message text,
            object_data jsonb, extra_metadata jsonb);
    END IF;
END $$;

-- Core logic, shared by both flavours. Returns (status, id, entity).
CREATE OR REPLACE FUNCTION core.record_op(input jsonb,
    OUT status text, OUT message text, OUT entity_id uuid, OUT entity jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_op_id text := input->>'op_id';
BEGIN
    IF v_op_id IS NULL OR v_op_id = '' THEN
        status := 'failed:validation'; message := 'op_id is required'; RETURN;
    END IF;
    INSERT INTO core.tb_ledger (op_id, client, amount, note)
    VALUES (v_op_id, coalesce(input->>'client', 'unknown'),
            coalesce((input->>'amount')::integer, 0), coalesce(input->>'note', ''))
    ON CONFLICT (op_id) DO NOTHING
    RETURNING id INTO entity_id;
    IF entity_id IS NULL THEN
        SELECT id INTO entity_id FROM core.tb_ledger WHERE op_id = v_op_id;
        status := 'noop:duplicate'; message := 'operation ' || v_op_id || ' was already recorded';
    ELSE
        status := 'success'; message := 'operation ' || v_op_id || ' recorded';
    END IF;
    SELECT data INTO entity FROM public.v_ledger WHERE id = entity_id;
END $$;

CREATE OR REPLACE FUNCTION core.increment_counter(input jsonb,
    OUT status text, OUT message text, OUT entity_id uuid, OUT entity jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := coalesce(input->>'name', 'default');
    v_by bigint := coalesce((input->>'by')::bigint, 1);
BEGIN
    -- A single atomic upsert: concurrent increments never lose updates.
    INSERT INTO core.tb_counter AS c (name, value) VALUES (v_name, v_by)
    ON CONFLICT (name) DO UPDATE SET value = c.value + EXCLUDED.value, updated_at = clock_timestamp()
    RETURNING id INTO entity_id;
    SELECT data INTO entity FROM public.v_counter WHERE id = entity_id;
    status := 'success'; message := 'counter ' || v_name || ' incremented by ' || v_by;
END $$;

CREATE OR REPLACE FUNCTION app.record_op(input jsonb) RETURNS app.mutation_response
LANGUAGE sql AS $$
    SELECT ROW(r.status, r.message, r.entity_id::text, 'LedgerEntry', r.entity,
               NULL::text[], NULL::jsonb, NULL::jsonb)::app.mutation_response
    FROM core.record_op(input) r
$$;

CREATE OR REPLACE FUNCTION app.increment_counter(input jsonb) RETURNS app.mutation_response
LANGUAGE sql AS $$
    SELECT ROW(r.status, r.message, r.entity_id::text, 'Counter', r.entity,
               ARRAY['value'], NULL::jsonb, NULL::jsonb)::app.mutation_response
    FROM core.increment_counter(input) r
$$;

CREATE OR REPLACE FUNCTION app_v05.record_op(input jsonb) RETURNS app_v05.mutation_result
LANGUAGE sql AS $$
    SELECT ROW(r.entity_id, NULL::text[], r.status, r.message, r.entity,
               jsonb_build_object('entity', 'ledger_entry'))::app_v05.mutation_result
    FROM core.record_op(input) r
$$;

CREATE OR REPLACE FUNCTION app_v05.increment_counter(input jsonb) RETURNS app_v05.mutation_result
LANGUAGE sql AS $$
    SELECT ROW(r.entity_id, ARRAY['value'], r.status, r.message, r.entity,
               jsonb_build_object('entity', 'counter'))::app_v05.mutation_result
    FROM core.increment_counter(input) r
$$;

-- A statement that takes `seconds` (capped at 600) inside PostgreSQL: what FraiseQL's
-- query timeout, PostgreSQL's statement_timeout and the pool see as a slow query.
CREATE OR REPLACE FUNCTION core.slow_query(input jsonb,
    OUT seconds double precision, OUT slept_ms double precision, OUT backend_pid integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_start timestamptz := clock_timestamp();
BEGIN
    seconds := greatest(0, least(coalesce((input->>'seconds')::double precision, 0), 600));
    PERFORM pg_sleep(seconds);
    slept_ms := extract(epoch FROM clock_timestamp() - v_start) * 1000;
    backend_pid := pg_backend_pid();
END $$;

-- Accounts are opened on first use with the balance the client names; opening an open
-- account changes nothing.
CREATE OR REPLACE FUNCTION core.open_accounts(p_grp text, p_names text[], p_balance bigint)
RETURNS integer
LANGUAGE sql AS $$
    WITH opened AS (
        INSERT INTO core.tb_account (grp, name, balance, initial)
        SELECT p_grp, n, p_balance, p_balance FROM unnest(p_names) AS n
        ON CONFLICT (grp, name) DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM opened
$$;

-- Moves `amount` between two accounts of a group, or withdraws it from the group
-- (`to` absent). Deliberately read-then-write: both balances are read first and written
-- back from what was read, with an optional pause (`hold_s`) between the debit and the
-- credit. Under READ COMMITTED concurrent transfers lose updates (the group total drifts);
-- REPEATABLE READ refuses the concurrent update; a withdrawal checks the group's rule
-- "the total never drops below zero" against its snapshot, so two withdrawals from
-- different accounts both pass under REPEATABLE READ (write skew) and only SERIALIZABLE
-- refuses one. The isolation level is the caller's (the demo app sets it as the first
-- statement of the transaction); the answer reports the level in effect.
CREATE OR REPLACE FUNCTION core.transfer(input jsonb,
    OUT status text, OUT message text, OUT entity_id uuid, OUT entity jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_op_id text := input->>'op_id';
    v_grp text := input->>'group';
    v_from text := input->>'from';
    v_to text := nullif(input->>'to', '');
    v_amount bigint := coalesce((input->>'amount')::bigint, 0);
    v_hold double precision := greatest(0, least(coalesce((input->>'hold_s')::double precision, 0), 60));
    v_isolation text := current_setting('transaction_isolation');
    v_from_balance bigint;
    v_to_balance bigint;
    v_total bigint;
BEGIN
    IF coalesce(v_op_id, '') = '' OR coalesce(v_grp, '') = '' OR coalesce(v_from, '') = '' THEN
        status := 'failed:validation'; message := 'op_id, group and from are required'; RETURN;
    END IF;
    IF v_amount <= 0 OR v_from = v_to THEN
        status := 'failed:validation';
        message := 'amount must be > 0 and the accounts must differ'; RETURN;
    END IF;
    SELECT id INTO entity_id FROM core.tb_transfer WHERE op_id = v_op_id;
    IF entity_id IS NOT NULL THEN
        status := 'noop:duplicate'; message := 'transfer ' || v_op_id || ' was already made';
        SELECT to_jsonb(t) INTO entity FROM core.tb_transfer t WHERE id = entity_id;
        RETURN;
    END IF;
    SELECT balance INTO v_from_balance FROM core.tb_account WHERE grp = v_grp AND name = v_from;
    IF v_to IS NOT NULL THEN
        SELECT balance INTO v_to_balance FROM core.tb_account WHERE grp = v_grp AND name = v_to;
    END IF;
    IF v_from_balance IS NULL OR (v_to IS NOT NULL AND v_to_balance IS NULL) THEN
        status := 'failed:not_found';
        message := 'no such account in group ' || v_grp; RETURN;
    END IF;
    SELECT sum(balance) INTO v_total FROM core.tb_account WHERE grp = v_grp;
    IF v_to IS NULL AND v_total - v_amount < 0 THEN
        status := 'failed:insufficient_funds';
        message := 'group ' || v_grp || ' holds ' || v_total || ', cannot withdraw ' || v_amount;
        RETURN;
    END IF;
    UPDATE core.tb_account SET balance = v_from_balance - v_amount, updated_at = clock_timestamp()
    WHERE grp = v_grp AND name = v_from;
    IF v_hold > 0 THEN
        PERFORM pg_sleep(v_hold);
    END IF;
    IF v_to IS NOT NULL THEN
        UPDATE core.tb_account SET balance = v_to_balance + v_amount, updated_at = clock_timestamp()
        WHERE grp = v_grp AND name = v_to;
    END IF;
    INSERT INTO core.tb_transfer (op_id, grp, from_name, to_name, amount, isolation)
    VALUES (v_op_id, v_grp, v_from, v_to, v_amount, v_isolation)
    RETURNING id INTO entity_id;
    status := 'success';
    message := 'transfer ' || v_op_id || ' made at ' || v_isolation;
    entity := jsonb_build_object(
        'id', entity_id, 'op_id', v_op_id, 'group', v_grp, 'from', v_from, 'to', v_to,
        'amount', v_amount, 'isolation', v_isolation, 'group_total_read', v_total,
        'from_balance', v_from_balance - v_amount, 'to_balance', v_to_balance + v_amount);
END $$;

CREATE OR REPLACE FUNCTION app.transfer(input jsonb) RETURNS app.mutation_response
LANGUAGE sql AS $$
    SELECT ROW(r.status, r.message, r.entity_id::text, 'Transfer', r.entity,
               ARRAY['balance'], NULL::jsonb, NULL::jsonb)::app.mutation_response
    FROM core.transfer(input) r
$$;

CREATE OR REPLACE FUNCTION app_v05.transfer(input jsonb) RETURNS app_v05.mutation_result
LANGUAGE sql AS $$
    SELECT ROW(r.entity_id, ARRAY['balance'], r.status, r.message, r.entity,
               jsonb_build_object('entity', 'transfer'))::app_v05.mutation_result
    FROM core.transfer(input) r
$$;

-- One consistent read of a group (a single statement, so even READ COMMITTED sees one
-- snapshot): what the accounts hold, what they were opened with, what left the group.
-- Invariants: total + withdrawn = initial_total (nothing created or lost) and
-- total >= 0 (the withdrawal rule). Also the runner's ground truth.
CREATE OR REPLACE FUNCTION core.account_snapshot(p_grp text,
    OUT isolation text, OUT accounts integer, OUT total bigint, OUT initial_total bigint,
    OUT min_balance bigint, OUT transfers integer, OUT withdrawn bigint)
LANGUAGE sql STABLE AS $$
    SELECT current_setting('transaction_isolation'), a.accounts, a.total, a.initial_total,
           a.min_balance, t.transfers, t.withdrawn
    FROM (SELECT count(*)::integer AS accounts, coalesce(sum(balance), 0)::bigint AS total,
                 coalesce(sum(initial), 0)::bigint AS initial_total, min(balance) AS min_balance
          FROM core.tb_account WHERE grp = p_grp) a,
         (SELECT count(*)::integer AS transfers,
                 coalesce(sum(amount) FILTER (WHERE to_name IS NULL), 0)::bigint AS withdrawn
          FROM core.tb_transfer WHERE grp = p_grp) t
$$;

-- A note renamed by the cache experiments (cache.partial-invalidation): every update
-- bumps its version, so a read tells which write it reflects. Its own table and view
-- (v_note), so no other scenario's answers change when it is renamed.
CREATE TABLE IF NOT EXISTS core.tb_note (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE VIEW public.v_note AS
SELECT n.id,
       jsonb_build_object('id', n.id, 'title', n.title, 'version', n.version,
                          'updated_at', n.updated_at) AS data
FROM core.tb_note n;

CREATE OR REPLACE FUNCTION core.update_note(input jsonb,
    OUT status text, OUT message text, OUT entity_id uuid, OUT entity jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE core.tb_note SET title = coalesce(input->>'title', title), version = version + 1,
                            updated_at = clock_timestamp()
    WHERE id = (input->>'id')::uuid
    RETURNING id INTO entity_id;
    IF entity_id IS NULL THEN
        status := 'failed:not_found'; message := 'no note ' || coalesce(input->>'id', '?');
        RETURN;
    END IF;
    SELECT data INTO entity FROM public.v_note WHERE id = entity_id;
    status := 'success'; message := 'note renamed';
END $$;

-- `update_note`: the name FraiseQL's cached repository derives what to invalidate from.
CREATE OR REPLACE FUNCTION app.update_note(input jsonb) RETURNS app.mutation_response
LANGUAGE sql AS $$
    SELECT ROW(r.status, r.message, r.entity_id::text, 'Note', r.entity,
               ARRAY['title', 'version'], NULL::jsonb, NULL::jsonb)::app.mutation_response
    FROM core.update_note(input) r
$$;

CREATE OR REPLACE FUNCTION app_v05.update_note(input jsonb) RETURNS app_v05.mutation_result
LANGUAGE sql AS $$
    SELECT ROW(r.entity_id, ARRAY['title', 'version'], r.status, r.message, r.entity,
               jsonb_build_object('entity', 'note'))::app_v05.mutation_result
    FROM core.update_note(input) r
$$;
