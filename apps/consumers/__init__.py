"""SQS consumer workers: apply destination records to destination stores."""
