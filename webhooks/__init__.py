"""Outgoing webhooks: signing (Standard Webhooks), endpoint configuration, the endpoint
registry's client side, and delivery metrics. The durable parts are workflows
(workflows/webhook_delivery.py) and an activity (activities/webhooks.py)."""
