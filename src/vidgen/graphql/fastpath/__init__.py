"""The GraphQL layer's speed-ups, kept together: each gives exactly what the plain path
gives (a test compares the two for each), only cheaper.

- :mod:`.field_plans` and :mod:`.executor`: fields that only read a row resolve inline,
  without graphql-core's and Strawberry's per-field machinery (``direct`` resolvers,
  Relay ids, ``__typename``), and ORM rows count as plain values, not awaitables
  (``tests/api/test_fast_execution.py``);
- :mod:`.inputs`: input objects built from a plan made once per input type
  (``tests/api/test_input_plans.py``);
- :mod:`.page_sql`: the root ``videos`` page's statement kept per shape of filters, with
  its to-one relations joined (``tests/api/test_list_fast.py``);
- :mod:`.preload`: that page's selected relations loaded before its fields resolve, so
  the relation resolvers return values instead of awaitables;
- :mod:`.keyed_query`: the loaders' SQL built once per number of keys.

Outside this package, because they belong to their own layer: ``vidgen.db.row_builder``
(model instances from raw rows, as Tortoise's ``_init_from_db``), the hooks of
``services.videos.VideoList`` that :mod:`.page_sql` reads (``shape``, ``params`` and the
source with other values), ``web.app.serving_gc`` (the collector while serving), and the
view's JSON encoder and HTTP entry point (``graphql.view.GraphQLView``).
"""
