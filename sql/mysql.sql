-- pipeline_engine schema for mysql, generated from the Alembic migrations by scripts/gen-sql.
-- Do not edit: change a migration and run scripts/gen-sql. `pipeline-engine db upgrade`
-- applies the same migrations and records the version in pipeline_engine_version.

CREATE TABLE pipeline_engine_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT pipeline_engine_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

CREATE TABLE graph (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    description TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    sealed_at DATETIME(6),
    CONSTRAINT pk_graph PRIMARY KEY (id),
    CONSTRAINT uq_graph_name UNIQUE (name),
    CONSTRAINT ck_graph_status CHECK (status IN ('draft', 'checked', 'sealed'))
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE vertex (
    id INTEGER NOT NULL AUTO_INCREMENT,
    graph_id INTEGER NOT NULL,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    position INTEGER NOT NULL,
    script MEDIUMTEXT NOT NULL,
    description TEXT NOT NULL,
    inputs MEDIUMTEXT NOT NULL,
    timeout DOUBLE,
    retries INTEGER NOT NULL,
    CONSTRAINT pk_vertex PRIMARY KEY (id),
    CONSTRAINT fk_vertex_graph_id_graph FOREIGN KEY(graph_id) REFERENCES graph (id) ON DELETE CASCADE,
    CONSTRAINT uq_vertex_graph_id_name UNIQUE (graph_id, name),
    CONSTRAINT uq_vertex_graph_id_id UNIQUE (graph_id, id),
    CONSTRAINT ck_vertex_timeout CHECK (timeout IS NULL OR timeout > 0),
    CONSTRAINT ck_vertex_retries CHECK (retries >= 0)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE edge (
    id INTEGER NOT NULL AUTO_INCREMENT,
    graph_id INTEGER NOT NULL,
    tail_id INTEGER NOT NULL,
    head_id INTEGER NOT NULL,
    CONSTRAINT pk_edge PRIMARY KEY (id),
    CONSTRAINT fk_edge_tail_vertex FOREIGN KEY(graph_id, tail_id) REFERENCES vertex (graph_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_edge_head_vertex FOREIGN KEY(graph_id, head_id) REFERENCES vertex (graph_id, id) ON DELETE CASCADE,
    CONSTRAINT uq_edge_graph_id_tail_id_head_id UNIQUE (graph_id, tail_id, head_id),
    CONSTRAINT ck_edge_no_self_loop CHECK (tail_id <> head_id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_edge_graph_id_head_id ON edge (graph_id, head_id);

CREATE TABLE pipeline (
    id BIGINT NOT NULL AUTO_INCREMENT,
    graph_id INTEGER NOT NULL,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    state VARCHAR(16) NOT NULL,
    params MEDIUMTEXT NOT NULL,
    workers INTEGER,
    created_at DATETIME(6) NOT NULL,
    started_at DATETIME(6),
    finished_at DATETIME(6),
    CONSTRAINT pk_pipeline PRIMARY KEY (id),
    CONSTRAINT fk_pipeline_graph_id_graph FOREIGN KEY(graph_id) REFERENCES graph (id) ON DELETE RESTRICT,
    CONSTRAINT ck_pipeline_state CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled'))
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_pipeline_graph_id_created_at ON pipeline (graph_id, created_at);

CREATE INDEX ix_pipeline_state ON pipeline (state);

CREATE TABLE track (
    id BIGINT NOT NULL AUTO_INCREMENT,
    pipeline_id BIGINT NOT NULL,
    vertex_id INTEGER NOT NULL,
    state VARCHAR(16) NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    waiting_on INTEGER NOT NULL,
    priority DOUBLE NOT NULL,
    inputs MEDIUMTEXT NOT NULL,
    script MEDIUMTEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    worker VARCHAR(255),
    heartbeat_at DATETIME(6),
    started_at DATETIME(6),
    finished_at DATETIME(6),
    stdout MEDIUMTEXT NOT NULL,
    stderr MEDIUMTEXT NOT NULL,
    log_path VARCHAR(1024),
    CONSTRAINT pk_track PRIMARY KEY (id),
    CONSTRAINT fk_track_pipeline_id_pipeline FOREIGN KEY(pipeline_id) REFERENCES pipeline (id) ON DELETE CASCADE,
    CONSTRAINT fk_track_vertex_id_vertex FOREIGN KEY(vertex_id) REFERENCES vertex (id) ON DELETE RESTRICT,
    CONSTRAINT uq_track_pipeline_id_vertex_id UNIQUE (pipeline_id, vertex_id),
    CONSTRAINT ck_track_state CHECK (state IN ('waiting', 'pending', 'running', 'succeeded', 'failed', 'upstream_failed', 'cancelled')),
    CONSTRAINT ck_track_attempt CHECK (attempt >= 0)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_track_state_priority ON track (state, priority);

CREATE INDEX ix_track_vertex_id ON track (vertex_id);

INSERT INTO pipeline_engine_version (version_num) VALUES ('0001');

-- Running upgrade 0001 -> 0002

CREATE TABLE worker (
    id BIGINT NOT NULL AUTO_INCREMENT,
    name VARCHAR(255) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    lease DOUBLE NOT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    stopped_at DATETIME(6),
    CONSTRAINT pk_worker PRIMARY KEY (id),
    CONSTRAINT uq_worker_name UNIQUE (name)
)ENGINE=InnoDB CHARSET=utf8mb4;

ALTER TABLE pipeline ADD COLUMN owner VARCHAR(255);

ALTER TABLE pipeline ADD COLUMN secret_inputs BOOL NOT NULL DEFAULT false;

CREATE INDEX ix_track_pipeline_id_state ON track (pipeline_id, state);

CREATE INDEX ix_track_worker ON track (worker);

UPDATE pipeline_engine_version SET version_num='0002' WHERE pipeline_engine_version.version_num = '0001';

-- Running upgrade 0002 -> 0003

ALTER TABLE vertex ADD COLUMN priority DOUBLE;

ALTER TABLE track ADD COLUMN duration DOUBLE;

CREATE INDEX ix_track_vertex_id_state ON track (vertex_id, state);

UPDATE pipeline_engine_version SET version_num='0003' WHERE pipeline_engine_version.version_num = '0002';

-- Running upgrade 0003 -> 0004

CREATE TABLE pool (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    size INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_pool PRIMARY KEY (id),
    CONSTRAINT ck_pool_ck_pool_size CHECK (size >= 0),
    CONSTRAINT uq_pool_name UNIQUE (name)
)ENGINE=InnoDB CHARSET=utf8mb4;

ALTER TABLE vertex ADD COLUMN pool VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

ALTER TABLE track ADD COLUMN pool VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

UPDATE pipeline_engine_version SET version_num='0004' WHERE pipeline_engine_version.version_num = '0003';

-- Running upgrade 0004 -> 0005

ALTER TABLE graph ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

ALTER TABLE graph DROP INDEX uq_graph_name;

ALTER TABLE graph ADD CONSTRAINT uq_graph_name_version UNIQUE (name, version);

UPDATE pipeline_engine_version SET version_num='0005' WHERE pipeline_engine_version.version_num = '0004';

-- Running upgrade 0005 -> 0006

ALTER TABLE vertex ADD COLUMN retry_delay DOUBLE NOT NULL DEFAULT '0';

ALTER TABLE vertex ADD COLUMN retry_backoff DOUBLE NOT NULL DEFAULT '1';

ALTER TABLE vertex ADD COLUMN cwd VARCHAR(1024);

ALTER TABLE vertex ADD COLUMN env MEDIUMTEXT;

ALTER TABLE track ADD COLUMN not_before DATETIME(6);

UPDATE pipeline_engine_version SET version_num='0006' WHERE pipeline_engine_version.version_num = '0005';

-- Running upgrade 0006 -> 0007

CREATE TABLE installation (
    slot INTEGER NOT NULL,
    id VARCHAR(32) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_installation PRIMARY KEY (slot),
    CONSTRAINT ck_installation_slot CHECK (slot = 1)
)ENGINE=InnoDB CHARSET=utf8mb4;

UPDATE pipeline_engine_version SET version_num='0007' WHERE pipeline_engine_version.version_num = '0006';

-- Running upgrade 0007 -> 0008

ALTER TABLE pipeline DROP COLUMN workers;

UPDATE pipeline_engine_version SET version_num='0008' WHERE pipeline_engine_version.version_num = '0007';

-- Running upgrade 0008 -> 0009

CREATE TABLE token (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `role` VARCHAR(16) NOT NULL,
    digest VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    last_used_at DATETIME(6),
    CONSTRAINT pk_token PRIMARY KEY (id),
    CONSTRAINT ck_token_role CHECK (role IN ('viewer', 'operator', 'editor', 'admin')),
    CONSTRAINT uq_token_name UNIQUE (name),
    CONSTRAINT uq_token_digest UNIQUE (digest)
)ENGINE=InnoDB CHARSET=utf8mb4;

UPDATE pipeline_engine_version SET version_num='0009' WHERE pipeline_engine_version.version_num = '0008';

-- Running upgrade 0009 -> 0010

ALTER TABLE pipeline ADD COLUMN started_by VARCHAR(255);

CREATE TABLE audit (
    id BIGINT NOT NULL AUTO_INCREMENT,
    at DATETIME(6) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    action VARCHAR(64) NOT NULL,
    target VARCHAR(255) NOT NULL,
    detail TEXT NOT NULL,
    CONSTRAINT pk_audit PRIMARY KEY (id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE idempotency (
    actor VARCHAR(255) NOT NULL,
    `key` VARCHAR(255) NOT NULL,
    digest VARCHAR(64) NOT NULL,
    pipeline_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_idempotency PRIMARY KEY (actor, `key`),
    CONSTRAINT fk_idempotency_pipeline_id_pipeline FOREIGN KEY(pipeline_id) REFERENCES pipeline (id) ON DELETE CASCADE
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_idempotency_pipeline_id ON idempotency (pipeline_id);

UPDATE pipeline_engine_version SET version_num='0010' WHERE pipeline_engine_version.version_num = '0009';

-- Running upgrade 0010 -> 0011

ALTER TABLE track ADD COLUMN changed_at DATETIME(6);

CREATE INDEX ix_track_pipeline_id_changed_at ON track (pipeline_id, changed_at);

UPDATE pipeline_engine_version SET version_num='0011' WHERE pipeline_engine_version.version_num = '0010';

-- Running upgrade 0011 -> 0012

CREATE TABLE schedule (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    graph VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    cron VARCHAR(255),
    every_seconds INTEGER,
    timezone VARCHAR(64) NOT NULL,
    parameters MEDIUMTEXT NOT NULL,
    catchup VARCHAR(8) NOT NULL,
    max_catchup INTEGER NOT NULL,
    overlap VARCHAR(8) NOT NULL,
    start_at DATETIME(6) NOT NULL,
    end_at DATETIME(6),
    paused BOOL NOT NULL,
    next_fire_at DATETIME(6),
    last_fire_at DATETIME(6),
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_schedule PRIMARY KEY (id),
    CONSTRAINT uq_schedule_name UNIQUE (name),
    CONSTRAINT ck_schedule_ck_schedule_catchup CHECK (catchup IN ('none', 'latest', 'all')),
    CONSTRAINT ck_schedule_ck_schedule_overlap CHECK (overlap IN ('allow', 'skip', 'queue', 'cancel')),
    CONSTRAINT ck_schedule_ck_schedule_cron_or_every CHECK ((cron IS NULL) <> (every_seconds IS NULL)),
    CONSTRAINT ck_schedule_ck_schedule_max_catchup CHECK (max_catchup >= 1)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_schedule_next_fire_at ON schedule (next_fire_at);

CREATE INDEX ix_schedule_graph ON schedule (graph);

CREATE TABLE schedule_decision (
    id BIGINT NOT NULL AUTO_INCREMENT,
    schedule_id INTEGER NOT NULL,
    fire_at DATETIME(6) NOT NULL,
    decision VARCHAR(16) NOT NULL,
    pipeline_id BIGINT,
    reason TEXT NOT NULL,
    decided_at DATETIME(6) NOT NULL,
    scheduler VARCHAR(255) NOT NULL,
    CONSTRAINT pk_schedule_decision PRIMARY KEY (id),
    CONSTRAINT fk_schedule_decision_schedule_id_schedule FOREIGN KEY(schedule_id) REFERENCES schedule (id) ON DELETE CASCADE,
    CONSTRAINT fk_schedule_decision_pipeline_id_pipeline FOREIGN KEY(pipeline_id) REFERENCES pipeline (id) ON DELETE SET NULL,
    CONSTRAINT uq_schedule_decision_schedule_id_fire_at UNIQUE (schedule_id, fire_at),
    CONSTRAINT ck_schedule_decision_ck_schedule_decision_decision CHECK (decision IN ('created', 'skipped', 'queued', 'missed', 'refused'))
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_schedule_decision_pipeline_id ON schedule_decision (pipeline_id);

ALTER TABLE pipeline ADD COLUMN `trigger` VARCHAR(16);

ALTER TABLE pipeline ADD COLUMN schedule VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

ALTER TABLE pipeline ADD COLUMN fire_at DATETIME(6);

CREATE INDEX ix_pipeline_schedule_state ON pipeline (schedule, state);

UPDATE pipeline_engine_version SET version_num='0012' WHERE pipeline_engine_version.version_num = '0011';

-- Running upgrade 0012 -> 0013

CREATE TABLE backfill (
    id INTEGER NOT NULL AUTO_INCREMENT,
    graph VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    schedule VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    cron VARCHAR(255),
    every_seconds INTEGER,
    timezone VARCHAR(64) NOT NULL,
    parameters MEDIUMTEXT NOT NULL,
    from_at DATETIME(6) NOT NULL,
    to_at DATETIME(6) NOT NULL,
    max_active INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    CONSTRAINT pk_backfill PRIMARY KEY (id),
    CONSTRAINT ck_backfill_ck_backfill_max_active CHECK (max_active >= 1)
)ENGINE=InnoDB CHARSET=utf8mb4;

ALTER TABLE pipeline DROP CONSTRAINT ck_pipeline_state;

ALTER TABLE pipeline ADD CONSTRAINT ck_pipeline_state CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'));

ALTER TABLE pipeline ADD COLUMN backfill_id INTEGER;

ALTER TABLE pipeline ADD COLUMN run_key VARCHAR(255);

ALTER TABLE pipeline ADD CONSTRAINT fk_pipeline_backfill_id_backfill FOREIGN KEY(backfill_id) REFERENCES backfill (id) ON DELETE SET NULL;

CREATE UNIQUE INDEX uq_pipeline_run_key ON pipeline (run_key);

CREATE INDEX ix_pipeline_backfill_id_state ON pipeline (backfill_id, state);

UPDATE pipeline_engine_version SET version_num='0013' WHERE pipeline_engine_version.version_num = '0012';

-- Running upgrade 0013 -> 0014

CREATE TABLE web_session (
    id INTEGER NOT NULL AUTO_INCREMENT,
    digest VARCHAR(64) NOT NULL,
    token_id INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_web_session PRIMARY KEY (id),
    CONSTRAINT fk_web_session_token_id_token FOREIGN KEY(token_id) REFERENCES token (id) ON DELETE CASCADE,
    CONSTRAINT uq_web_session_digest UNIQUE (digest)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_web_session_token_id ON web_session (token_id);

UPDATE pipeline_engine_version SET version_num='0014' WHERE pipeline_engine_version.version_num = '0013';

-- Running upgrade 0014 -> 0015

CREATE TABLE attempt (
    track_id BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    worker VARCHAR(255),
    started_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    exit_code INTEGER,
    error TEXT,
    CONSTRAINT pk_attempt PRIMARY KEY (track_id, attempt),
    CONSTRAINT fk_attempt_track_id_track FOREIGN KEY(track_id) REFERENCES track (id) ON DELETE CASCADE,
    CONSTRAINT ck_attempt_outcome CHECK (outcome IN ('succeeded', 'failed', 'timed_out', 'lost', 'cancelled')),
    CONSTRAINT ck_attempt_attempt CHECK (attempt >= 1)
)ENGINE=InnoDB CHARSET=utf8mb4;

UPDATE pipeline_engine_version SET version_num='0015' WHERE pipeline_engine_version.version_num = '0014';
