"""Outgoing webhooks: vidgen POSTs each status change of a video to the URL its owner gave.

(The callbacks vidgen *receives* from providers are :mod:`vidgen.jobs.webhooks`.)

- the outbox rows (:class:`vidgen.models.WebhookDelivery`) are written by the lifecycle in
  the transaction of each status change (:mod:`vidgen.jobs.lifecycle.outbox`);
- :mod:`.outbox`: the delivery side's SQL (claim the due ones, one per video at a time;
  keep the body; record how an attempt went);
- :mod:`.payload` (the JSON body), :mod:`.signing` (secrets and Standard Webhooks
  signatures), :mod:`.addresses` (which receivers are allowed, checked at input and at send
  time), :mod:`.sender` (one HTTP attempt, bounded in time and bytes);
- :mod:`.delivery`: the loop every worker runs, with its retry policy.

docs/webhooks.md describes the behaviour for users.
"""
