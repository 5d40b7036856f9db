"""Events: the bus that carries committed changes, and what subscribers rebuild from them.

- the bus: :mod:`.bus` (the interface), :mod:`.memory` and :mod:`.redis` (the two
  buses), :mod:`.local` (local delivery), :mod:`.channels`, :mod:`.messages`, :mod:`.batch`;
- the event log's readers: :mod:`.history` (a change's row, a video as of an older
  version), :mod:`.video_states` (one load per video and version per process),
  :mod:`.feed` (``videoUpdates``: replay after a cursor, then live, each change once).

Only the lifecycle (:mod:`vidgen.jobs.lifecycle`) writes the event log; nothing here writes
to the database.
"""
