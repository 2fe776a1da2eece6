-- FraiseQL demo schema for the chaos lab. Idempotent: safe to apply again.
-- Tables (tb_*) hold the truth; views (v_*) expose id + JSONB data the way FraiseQL
-- reads them; mutations are PL/pgSQL functions. Two mutation flavours share one core:
--   app.*      -> app.mutation_response (8 columns)  for FraiseQL 1.9.x
--   app_v05.*  -> app_v05.mutation_result (6 columns) for FraiseQL 0.5.3
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
