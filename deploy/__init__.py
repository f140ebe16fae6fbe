"""Deploy the lakehouse to Google Cloud and trigger its Dataform workflows (GCP or local)."""
