"""GCP naming rules and known locations, checked before any API call."""

from __future__ import annotations

import ipaddress
import re

# Regions where Cloud Functions (2nd gen), Cloud Scheduler and Dataform are offered together, as
# Google documented them in 2025; add one here when Google opens it.
REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
        "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2",
        "australia-southeast1", "australia-southeast2",
        "europe-central2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west2",
        "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9",
        "europe-west10", "europe-west12",
        "me-central1", "me-central2", "me-west1",
        "northamerica-northeast1", "northamerica-northeast2",
        "southamerica-east1", "southamerica-west1",
        "us-central1", "us-east1", "us-east4", "us-east5", "us-south1",
        "us-west1", "us-west2", "us-west3", "us-west4",
    }
)  # fmt: skip

# BigQuery (and bucket) locations: the two multi-regions and every single region above.
BIGQUERY_MULTI_REGIONS = frozenset({"US", "EU"})
BIGQUERY_LOCATIONS = BIGQUERY_MULTI_REGIONS | REGIONS

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_SERVICE_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PUBSUB_ID = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_FUNCTION_ID = re.compile(r"^[a-z][a-z0-9-]{0,47}[a-z0-9]$")
_RESOURCE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def project_id_problem(value: str) -> str | None:
    """Return why `value` is not a valid GCP project id, or None when it is."""
    if not _PROJECT_ID.fullmatch(value):
        return "a project id has 6-30 characters: lower-case letters, digits and hyphens, starting with a letter"
    if "google" in value:
        return "a project id cannot contain 'google'"
    return None


def bucket_problem(value: str) -> str | None:
    """Return why `value` is not a usable bucket name, or None when it is.

    Dotted names need domain verification, so they are refused here too.
    """
    if "." in value:
        return "bucket names with dots need a verified domain; use hyphens instead"
    if not _BUCKET.fullmatch(value):
        return (
            "a bucket name has 3-63 characters: lower-case letters, digits, '-' and '_', "
            "starting and ending with a letter or digit"
        )
    if value.startswith("goog") or "google" in value or "g00gle" in value:
        return "a bucket name cannot start with 'goog' or contain 'google'"
    try:
        ipaddress.ip_address(value.replace("-", "."))
    except ValueError:
        return None
    return "a bucket name cannot look like an IP address"


def dataset_problem(value: str) -> str | None:
    """Return why `value` is not a valid BigQuery dataset id, or None when it is."""
    if not _DATASET.fullmatch(value):
        return "a dataset id has 1-1024 characters: letters, digits and underscores"
    return None


def service_account_problem(value: str) -> str | None:
    """Return why `value` is not a valid service account id (the part before '@'), or None."""
    if not _SERVICE_ACCOUNT_ID.fullmatch(value):
        return (
            "a service account id has 6-30 characters: lower-case letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen"
        )
    return None


def pubsub_problem(value: str) -> str | None:
    """Return why `value` is not a valid Pub/Sub topic or subscription id, or None."""
    if not _PUBSUB_ID.fullmatch(value):
        return "a topic or subscription id has 3-255 characters: letters, digits and '-_.~+%', starting with a letter"
    if value.lower().startswith("goog"):
        return "a topic or subscription id cannot start with 'goog'"
    return None


def function_problem(value: str) -> str | None:
    """Return why `value` is not a valid Cloud Functions (2nd gen) id, or None.

    The limit is 49 characters because the function's Cloud Run service carries the same name.
    """
    if not _FUNCTION_ID.fullmatch(value):
        return (
            "a function id has 2-49 characters: lower-case letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen"
        )
    return None


def resource_id_problem(value: str) -> str | None:
    """Return why `value` is not a valid Dataform / connection / scheduler id, or None."""
    if not _RESOURCE_ID.fullmatch(value):
        return "an id has 1-63 characters: lower-case letters, digits, '-' and '_', starting with a letter"
    return None


def label_problem(key: str, value: str) -> str | None:
    """Return why key=value is not a valid GCP label, or None."""
    if not _LABEL_KEY.fullmatch(key):
        return f"label key {key!r}: 1-63 lower-case letters, digits, '-' or '_', starting with a letter"
    if not _LABEL_VALUE.fullmatch(value):
        return f"label value {value!r}: up to 63 lower-case letters, digits, '-' or '_'"
    return None


def source_problem(value: str) -> str | None:
    """Return why `value` is not a valid source (contract) name, or None."""
    if not _SOURCE.fullmatch(value):
        return "a source name matches ^[a-z][a-z0-9_]{0,62}$"
    return None
