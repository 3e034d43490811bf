-- Overrides with a reason, by patient and rule, written with the feedback so the
-- suppression lookup on each hook call is one keyed read, however many cards a
-- patient has been shown.
CREATE TABLE overrides (
    patient_hash  TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    reason_code   TEXT NOT NULL,
    overridden_at BIGINT NOT NULL,
    card_uuid     TEXT NOT NULL,
    PRIMARY KEY (patient_hash, rule_id, reason_code, card_uuid)
);

INSERT INTO overrides (patient_hash, rule_id, reason_code, overridden_at, card_uuid)
SELECT c.patient_hash, c.rule_id, f.reason_code, f.outcome_at, f.card_uuid
FROM feedback f JOIN issued_cards c ON c.card_uuid = f.card_uuid
WHERE f.outcome = 'overridden' AND f.reason_code IS NOT NULL;
