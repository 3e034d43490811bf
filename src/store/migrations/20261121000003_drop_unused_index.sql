-- Suppression reads the overrides table since 20261121000002, so nothing reads
-- issued_cards by patient any more; the index only cost a write per card.
DROP INDEX issued_cards_by_patient;
