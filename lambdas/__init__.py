"""Lambda runtime: per-destination transform functions (EventBridge -> SQS)."""
