"""The GraphQL layer's speed-ups, kept together: each gives exactly what the plain path
gives (a test compares the two for each), only cheaper.

- :mod:`.field_plans` and :mod:`.executor`: fields that only read a row resolve inline,
  without graphql-core's and Strawberry's per-field machinery (``direct`` resolvers,
  Relay ids, ``__typename``), and ORM rows count as plain values, not awaitables
  (``tests/api/test_fast_execution.py``);
- :mod:`.inputs`: input objects built from a plan made once per input type
  (``tests/api/test_input_plans.py``);
- :mod:`.preload`: relation values a loader already holds returned as values, not
  awaitables (``now_or_later``);
- :mod:`.keyed_query`: the loaders' SQL built once per number of keys.

The root ``videos`` list and ``viewer`` are answered by ``vidgen.graphql.compiled`` when
their documents allow (docs/graphql-execution.md); these serve everything that falls back.
Outside this package, because they belong to their own layer: ``vidgen.db.row_builder``
(model instances from raw rows, as Tortoise's ``_init_from_db``), ``web.app.serving_gc``
(the collector while serving), and the view's JSON encoder and HTTP entry point
(``graphql.view.GraphQLView``).
"""
