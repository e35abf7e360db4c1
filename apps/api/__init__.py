"""REST API: accepts user events and publishes them to EventBridge."""
