-- Cards and feedback belong to the client (issuer and tenant) that was issued them or sent
-- them: feedback from one client never touches another's cards. Rows written before this
-- migration belong to the local scope ('').
ALTER TABLE issued_cards ADD COLUMN client_scope TEXT NOT NULL DEFAULT '';

CREATE TABLE feedback_scoped (
    client_scope         TEXT NOT NULL,
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
    PRIMARY KEY (client_scope, card_uuid, outcome, outcome_timestamp)
);
INSERT INTO feedback_scoped (client_scope, card_uuid, outcome, outcome_timestamp, outcome_at, service_id,
    accepted_suggestions, reason_system, reason_code, reason_display, user_comment, received_at)
SELECT '', card_uuid, outcome, outcome_timestamp, outcome_at, service_id,
    accepted_suggestions, reason_system, reason_code, reason_display, user_comment, received_at
FROM feedback;
DROP TABLE feedback;
ALTER TABLE feedback_scoped RENAME TO feedback;
CREATE INDEX feedback_by_time ON feedback (outcome_at);
