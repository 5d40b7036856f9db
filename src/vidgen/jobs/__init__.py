"""The job engine. The Video row is the job: no second queue table.

- :mod:`.lifecycle`: the one writer of a video's status, version, event-log and attempt rows;
- :mod:`.queue` (the claim's pick) and :mod:`.leases` (heartbeat, sweep, release);
- :mod:`.worker` (a process's loops and slots), :mod:`.upkeep` (sweeper, purge) and
  :mod:`.writer` (group commit of the jobs' last writes), :mod:`.progress` (the jobs'
  progress, one statement per flush) and :mod:`.cpu` (the process's CPU pool);
- :mod:`.pipeline` (one job's run) with :mod:`.job_context`, :mod:`.provider_request`,
  :mod:`.media_stage` and :mod:`.outcomes` (how an attempt ends);
- :mod:`.retry` (provider retries and outages), :mod:`.transient` (database outages);
- :mod:`.control` (what the API asks: cancel, retry, wake) and :mod:`.webhooks` (routing
  provider callbacks to the running job).
"""
