-- Deterministic seed: fixed ids so tests can name rows. Inserts only what is missing.
INSERT INTO core.tb_author (id, name, email, bio) VALUES
  ('00000000-0000-4000-8000-000000000001', 'Ada Lovelace', 'ada@lab.example', '{"field": "mathematics"}'),
  ('00000000-0000-4000-8000-000000000002', 'Grace Hopper', 'grace@lab.example', '{"field": "compilers"}'),
  ('00000000-0000-4000-8000-000000000003', 'Edgar Codd', 'codd@lab.example', '{"field": "databases"}')
ON CONFLICT (id) DO NOTHING;

INSERT INTO core.tb_post (id, author_id, title, body, tags, created_at)
SELECT ('00000000-0000-4000-9000-' || lpad(i::text, 12, '0'))::uuid,
       ('00000000-0000-4000-8000-00000000000' || (1 + i % 3))::uuid,
       'Post ' || i, repeat('Lorem ipsum dolor sit amet. ', 1 + i % 20),
       ARRAY['tag' || (i % 5), 'lab'], timestamptz '2026-01-01' + i * interval '1 hour'
FROM generate_series(1, 200) AS i
ON CONFLICT (id) DO NOTHING;

INSERT INTO core.tb_counter (name, value) VALUES ('default', 0) ON CONFLICT (name) DO NOTHING;

INSERT INTO core.tb_note (id, title) VALUES ('00000000-0000-4000-a000-000000000001', 'note')
ON CONFLICT (id) DO NOTHING;

-- Large result sets: 10,000 items of ~150 bytes of JSON each (about 1.5 MB in all).
INSERT INTO core.tb_item (id, n, name, payload)
SELECT ('00000000-0000-4000-a000-' || lpad(i::text, 12, '0'))::uuid, i, 'Item ' || i,
       repeat(md5(i::text), 3)
FROM generate_series(1, 10000) AS i
ON CONFLICT (id) DO NOTHING;
