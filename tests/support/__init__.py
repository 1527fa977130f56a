"""Test support, defined once and imported by the test modules (which never import each other).

- :mod:`tests.support.harness` -- :class:`Bot`: the runtime (store, registry, worker) driven
  deterministically from a test, with capturing channels and a manual clock.
- :mod:`tests.support.api` -- :class:`Api`: the app ``chasqui serve`` runs, on a test client, with
  the admin token; :func:`app_config` builds its config; :func:`assert_error` checks error bodies.
- :mod:`tests.support.waiting` -- polling with a deadline (:func:`wait_for` async, :func:`until`
  sync) instead of sleeps.
- :mod:`tests.support.serve` -- ``chasqui serve`` as a subprocess: :func:`free_port`,
  :func:`write_toml`, :class:`Served`, and small blocking HTTP helpers.

The fixtures built on them (``make_api``, ``make_bot``) are in ``tests/conftest.py``.
"""
