"""kombu's Redis transport, with one publishing client per channel.

kombu builds a new redis-py client for every command it sends without one: each task sent,
each task event (sent, received, started, succeeded) and each acknowledgement. A redis-py
client copies its table of reply callbacks when made, about 0.25 ms of CPU, and commands
go through the channel's connection pool either way. Here a channel makes that client
once per pool and hands it to every caller; what is sent, and when, is unchanged.

Used for a plain `redis://` broker (`broker_transport` in backend/extensions.py); any other
broker URL keeps kombu's own transport.
"""

from contextlib import contextmanager

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _publisher = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        pool = self.pool  # made again after a disconnect: a new client for the new pool
        publisher = self._publisher
        if publisher is None or publisher.connection_pool is not pool:
            publisher = self._publisher = self._create_client()
        yield publisher


class Transport(kombu_redis.Transport):
    Channel = Channel
