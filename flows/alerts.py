"""Alerts: a night that does not promote (a refused batch or model, a campaign, a failed run) reaches a person
through Prefect's notification blocks: the params.yaml `alerts.webhook` as a CustomWebhookNotificationBlock, or a
saved block by name (Slack, Teams, e-mail, ...). Sending never fails the run: a lost alert is logged."""
from __future__ import annotations

import logging

from poisongate.config import AlertsConfig

LOGGER = logging.getLogger("poisongate.alerts")


def notifier(cfg: AlertsConfig):
    """The notification block `cfg` names, or None."""
    if cfg.block:
        from prefect.blocks.core import Block

        return Block.load(cfg.block)
    if cfg.webhook:
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        return CustomWebhookNotificationBlock(name="poisongate", url=cfg.webhook, method="POST",
                                              json_data={"subject": "{{subject}}", "body": "{{body}}"})
    return None


def send(cfg: AlertsConfig, subject: str, body: str) -> bool:
    """Notify; True when sent. Every failure (no server for a saved block, the receiver down) is logged."""
    try:
        block = notifier(cfg)
        if block is None:
            return False
        block.notify(body=body, subject=subject)
        return True
    except Exception as e:  # an alert must not turn a recorded run into a crashed one
        LOGGER.warning("alert not sent (%s: %s); check params.yaml alerts", type(e).__name__, e)
        return False


def on_failure(flow, flow_run, state) -> None:
    """The retrain flow's on_failure hook: a refused or failed night reaches a person (params.yaml `alerts`)."""
    from prefect import get_run_logger

    from poisongate import config as configuration
    from poisongate.errors import PoisongateError
    from poisongate.workspace import Workspace

    ws = Workspace(flow_run.parameters.get("workspace", "."))
    try:
        cfg = configuration.load(ws.params).alerts
    except PoisongateError as e:  # params.yaml is what broke: nothing says whom to tell
        get_run_logger().warning(f"no alert sent: {e}")
        return
    send(cfg, f"poisongate: night refused or failed in {ws.root}", state.message or str(state))
