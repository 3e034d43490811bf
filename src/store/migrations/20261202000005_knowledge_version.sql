-- Every issued card names the version of the knowledge that made it (the human version and
-- the content hash, e.g. '2026.12.1+3f2a9c1b0d4e'), so the report can tell override rates
-- apart by knowledge version. Cards issued before this migration have none (NULL).
ALTER TABLE issued_cards ADD COLUMN knowledge_version TEXT;
