"""paxline pipeline runtime: job API, workers, Kafka and Redis adapters, CLI."""

__all__: list[str] = []
