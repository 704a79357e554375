-- Reference (3): PostgreSQL's own single-row insert rate, one commit per row.
-- pgbench -n -f bench/pgbench_insert.sql -c 1|2 -j 1|2 -T S bench_chat
\set room random(1, 20)
INSERT INTO bench_insert (room_id, body) VALUES (:room, 'a benchmark message of about the length of an ordinary chat line, ~100 chars');
