"""Cloud Functions HTTP entry point of the workflow trigger, called by Cloud Scheduler."""

from __future__ import annotations

import logging

import functions_framework
from google.api_core.exceptions import GoogleAPICallError

from deploy import trigger


@functions_framework.http
def workflow_trigger(request):
    """Run the workflow the JSON body asks for; answer the report, 500/504 when it failed."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one JSON entry per line
    try:
        body = trigger.TriggerRequest.from_json(request.get_json(silent=True))
        target, write_rows = trigger.gcp_target_from_environment()
    except trigger.TriggerRequestError as error:
        return {"error": str(error)}, 400
    except trigger.TriggerSetupError as error:
        return {"error": str(error)}, 500
    try:
        report = target.run(body)
    except GoogleAPICallError as error:
        return trigger.api_failure(error), 502
    trigger.publish(report, write_rows)
    return report.to_json(), report.http_status
