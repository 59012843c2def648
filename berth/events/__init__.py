"""What happened, recorded and told: actions, cluster steps, agent wake-ups, the AMQP relay.
See README.md.
"""
