-- The retention job deletes history by age in small batches; these indexes keep each batch a
-- range read (issued_cards_by_time already serves issued cards). Feedback ages by when it was
-- received (the service's clock), not by the client's outcomeTimestamp.
CREATE INDEX overrides_by_time ON overrides (overridden_at);
CREATE INDEX feedback_by_receipt ON feedback (received_at);
