"""Events: what happened, recorded and told.

Owns: container actions and the event outbox (``actions``), Magnum's cluster
steps and notifications (``clusters``), wake-ups of agents waiting on their
desired state (``notify``) and the relay of notifications to RabbitMQ in
oslo.messaging's format (``amqp``). Services call into events; events never
import services. May import: store, domain.
"""
