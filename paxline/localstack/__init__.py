"""Local services for development, tests and `paxline up`: real Apache Kafka and Redis.

Stdlib only on purpose: `scripts/kafka` and `scripts/redis` run these modules with the system
Python before any virtualenv exists.
"""

from paxline.localstack.common import ServiceError

__all__ = ["ServiceError"]
