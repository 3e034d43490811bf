-- One schema for SQLite and PostgreSQL: TEXT, BIGINT (seconds since the epoch) and
-- composite primary keys only, so the same statements run on both.

CREATE TABLE issued_cards (
    card_uuid        TEXT PRIMARY KEY,
    service_id       TEXT NOT NULL,
    rule_id          TEXT NOT NULL,
    indicator        TEXT NOT NULL,
    hook_instance    TEXT NOT NULL,
    patient_hash     TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    suggestion_uuids TEXT NOT NULL
);
CREATE INDEX issued_cards_by_patient ON issued_cards (patient_hash, rule_id);
CREATE INDEX issued_cards_by_time ON issued_cards (issued_at);

CREATE TABLE feedback (
    card_uuid            TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    outcome_timestamp    TEXT NOT NULL,
    outcome_at           BIGINT NOT NULL,
    service_id           TEXT NOT NULL,
    accepted_suggestions TEXT NOT NULL,
    reason_system        TEXT,
    reason_code          TEXT,
    reason_display       TEXT,
    user_comment         TEXT,
    received_at          BIGINT NOT NULL,
    PRIMARY KEY (card_uuid, outcome, outcome_timestamp)
);
CREATE INDEX feedback_by_time ON feedback (outcome_at);

CREATE TABLE jwt_replay (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX jwt_replay_by_expiry ON jwt_replay (expires_at);

CREATE TABLE service_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
