"""The SQLite schema: migrations (immutable DDL, applied in order) and the tables they produce."""
from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

# Each migration is a list of statements; a migration once released is never edited, only appended to.
MIGRATIONS: list[list[str]] = [
    [  # 1: jobs, runs, task runs, task values, repairs, one id sequence for runs and task runs
        """CREATE TABLE jobs (
            job_id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            tags_json TEXT NOT NULL DEFAULT '{}',
            creator_user_name TEXT NOT NULL DEFAULT '',
            source_path TEXT,
            created_time INTEGER NOT NULL
        )""",
        "CREATE INDEX ix_jobs_name ON jobs (name)",
        "CREATE TABLE run_ids (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL)",
        """CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY,
            job_id INTEGER,
            run_name TEXT NOT NULL DEFAULT '',
            run_type TEXT NOT NULL DEFAULT 'JOB_RUN',
            trigger TEXT NOT NULL DEFAULT 'ONE_TIME',
            life_cycle_state TEXT NOT NULL,
            result_state TEXT,
            state_message TEXT NOT NULL DEFAULT '',
            settings_json TEXT NOT NULL,
            job_parameters_json TEXT NOT NULL DEFAULT '[]',
            creator_user_name TEXT NOT NULL DEFAULT '',
            trigger_time INTEGER NOT NULL,
            start_time INTEGER NOT NULL,
            end_time INTEGER NOT NULL DEFAULT 0,
            repair_count INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            idempotency_token TEXT,
            parent_task_run_id INTEGER
        )""",
        "CREATE INDEX ix_runs_job ON runs (job_id, run_id)",
        """CREATE TABLE task_runs (
            task_run_id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            task_key TEXT NOT NULL,
            attempt_number INTEGER NOT NULL DEFAULT 0,
            execution_count INTEGER NOT NULL DEFAULT 0,
            repair_id INTEGER,
            is_latest INTEGER NOT NULL DEFAULT 1,
            parent_task_run_id INTEGER,
            iteration_index INTEGER,
            life_cycle_state TEXT NOT NULL,
            result_state TEXT,
            state_message TEXT NOT NULL DEFAULT '',
            task_json TEXT NOT NULL,
            resolved_values_json TEXT,
            condition_outcome TEXT,
            exit_value TEXT,
            error TEXT,
            error_trace TEXT,
            output_path TEXT,
            logs_path TEXT,
            compute TEXT NOT NULL DEFAULT 'local',
            start_time INTEGER NOT NULL DEFAULT 0,
            end_time INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX ix_task_runs_run ON task_runs (run_id, task_key)",
        """CREATE TABLE task_values (
            run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            task_key TEXT NOT NULL,
            key TEXT NOT NULL,
            value_json TEXT NOT NULL,
            task_run_id INTEGER NOT NULL,
            PRIMARY KEY (run_id, task_key, key)
        )""",
        """CREATE TABLE repairs (
            repair_id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            request_json TEXT NOT NULL DEFAULT '{}',
            life_cycle_state TEXT NOT NULL,
            result_state TEXT,
            start_time INTEGER NOT NULL,
            end_time INTEGER NOT NULL DEFAULT 0,
            task_run_ids_json TEXT NOT NULL DEFAULT '[]'
        )""",
    ],
    [  # 2: control flow: cancel requests, queueing, `only`, for-each inputs, run-job children, retries
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN queue_enabled INTEGER",
        "ALTER TABLE runs ADD COLUMN queue_duration INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN only_json TEXT",
        "ALTER TABLE task_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE task_runs ADD COLUMN original_attempt_run_id INTEGER",
        "ALTER TABLE task_runs ADD COLUMN input_json TEXT",
        "ALTER TABLE task_runs ADD COLUMN child_run_id INTEGER",
        "CREATE INDEX ix_task_runs_parent ON task_runs (parent_task_run_id, iteration_index)",
        "CREATE INDEX ix_runs_token ON runs (job_id, idempotency_token)",
        "CREATE INDEX ix_runs_state ON runs (life_cycle_state, job_id)",
    ],
    [  # 3: idempotency tokens of deleted runs (run-now with such a token is an error, not a new run)
        """CREATE TABLE deleted_run_tokens (
            job_id INTEGER,
            idempotency_token TEXT NOT NULL,
            run_id INTEGER NOT NULL,
            deleted_time INTEGER NOT NULL
        )""",
        "CREATE INDEX ix_deleted_run_tokens ON deleted_run_tokens (job_id, idempotency_token)",
    ],
    [  # 4: a run's task runs read in id order without sorting them (10,000-task runs)
        "CREATE INDEX ix_task_runs_run_order ON task_runs (run_id, task_run_id)",
    ],
    [  # 5: service hosts: leases of once-per-workspace services, and each host's heartbeat and health
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            pid INTEGER,
            host TEXT,
            acquired_time INTEGER NOT NULL,
            renewed_time INTEGER NOT NULL,
            expires_time INTEGER NOT NULL
        )""",
        """CREATE TABLE service_hosts (
            holder TEXT PRIMARY KEY,
            pid INTEGER,
            host TEXT,
            started_time INTEGER NOT NULL,
            beat_time INTEGER NOT NULL,
            expires_time INTEGER NOT NULL,
            health_json TEXT NOT NULL DEFAULT '{}'
        )""",
    ],
    [  # 6: trigger slots: each slot of a schedule or trigger claimed once (its run, or why none started)
        """CREATE TABLE trigger_slots (
            job_id INTEGER NOT NULL,
            slot_time INTEGER NOT NULL,
            trigger TEXT NOT NULL,
            status TEXT NOT NULL,
            run_id INTEGER,
            holder TEXT,
            message TEXT NOT NULL DEFAULT '',
            detail_json TEXT,
            claimed_time INTEGER NOT NULL,
            PRIMARY KEY (job_id, slot_time)
        )""",
        "ALTER TABLE runs ADD COLUMN trigger_info_json TEXT",  # what triggered the run (file arrival: where)
    ],
    [  # 7: notification deliveries: one row per event and destination (nbjobs/notify)
        """CREATE TABLE notification_deliveries (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            task_key TEXT,
            event TEXT NOT NULL,
            destination TEXT NOT NULL,
            destination_type TEXT NOT NULL,
            created_time INTEGER NOT NULL,
            sent_time INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            result TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX ix_notification_deliveries_run ON notification_deliveries (run_id, delivery_id)",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("job_id", Integer, primary_key=True),
    Column("name", Text), Column("settings_json", Text), Column("tags_json", Text),
    Column("creator_user_name", Text), Column("source_path", Text), Column("created_time", Integer),
)

run_ids = Table("run_ids", metadata, Column("id", Integer, primary_key=True), Column("kind", String))

runs = Table(
    "runs", metadata,
    Column("run_id", Integer, primary_key=True),
    Column("job_id", Integer), Column("run_name", Text), Column("run_type", Text), Column("trigger", Text),
    Column("life_cycle_state", Text), Column("result_state", Text), Column("state_message", Text),
    Column("settings_json", Text), Column("job_parameters_json", Text), Column("creator_user_name", Text),
    Column("trigger_time", Integer), Column("start_time", Integer), Column("end_time", Integer),
    Column("repair_count", Integer), Column("pid", Integer), Column("idempotency_token", Text),
    Column("parent_task_run_id", Integer),
    Column("cancel_requested", Integer), Column("queue_enabled", Integer), Column("queue_duration", Integer),
    Column("only_json", Text), Column("trigger_info_json", Text),
)

task_runs = Table(
    "task_runs", metadata,
    Column("task_run_id", Integer, primary_key=True),
    Column("run_id", Integer), Column("task_key", Text), Column("attempt_number", Integer),
    Column("execution_count", Integer), Column("repair_id", Integer), Column("is_latest", Integer),
    Column("parent_task_run_id", Integer), Column("iteration_index", Integer),
    Column("life_cycle_state", Text), Column("result_state", Text), Column("state_message", Text),
    Column("task_json", Text), Column("resolved_values_json", Text), Column("condition_outcome", Text),
    Column("exit_value", Text), Column("error", Text), Column("error_trace", Text),
    Column("output_path", Text), Column("logs_path", Text), Column("compute", Text),
    Column("start_time", Integer), Column("end_time", Integer),
    Column("cancel_requested", Integer), Column("original_attempt_run_id", Integer), Column("input_json", Text),
    Column("child_run_id", Integer),
)

task_values = Table(
    "task_values", metadata,
    Column("run_id", Integer, primary_key=True), Column("task_key", Text, primary_key=True),
    Column("key", Text, primary_key=True), Column("value_json", Text), Column("task_run_id", Integer),
)

repairs = Table(
    "repairs", metadata,
    Column("repair_id", Integer, primary_key=True),
    Column("run_id", Integer), Column("request_json", Text), Column("life_cycle_state", Text),
    Column("result_state", Text), Column("start_time", Integer), Column("end_time", Integer),
    Column("task_run_ids_json", Text),
)

deleted_run_tokens = Table(
    "deleted_run_tokens", metadata,
    Column("job_id", Integer), Column("idempotency_token", Text), Column("run_id", Integer),
    Column("deleted_time", Integer),
)

leases = Table(
    "leases", metadata,
    Column("name", Text, primary_key=True), Column("holder", Text), Column("pid", Integer), Column("host", Text),
    Column("acquired_time", Integer), Column("renewed_time", Integer), Column("expires_time", Integer),
)

trigger_slots = Table(
    "trigger_slots", metadata,
    Column("job_id", Integer, primary_key=True), Column("slot_time", Integer, primary_key=True),
    Column("trigger", Text), Column("status", Text), Column("run_id", Integer), Column("holder", Text),
    Column("message", Text), Column("detail_json", Text), Column("claimed_time", Integer),
)

service_hosts = Table(
    "service_hosts", metadata,
    Column("holder", Text, primary_key=True), Column("pid", Integer), Column("host", Text),
    Column("started_time", Integer), Column("beat_time", Integer), Column("expires_time", Integer),
    Column("health_json", Text),
)

notification_deliveries = Table(
    "notification_deliveries", metadata,
    Column("delivery_id", Integer, primary_key=True),
    Column("run_id", Integer), Column("task_key", Text), Column("event", Text), Column("destination", Text),
    Column("destination_type", Text), Column("created_time", Integer), Column("sent_time", Integer),
    Column("attempts", Integer), Column("result", Text), Column("error", Text),
)
