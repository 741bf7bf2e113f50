"""What replay/, stream/ and the command line share: settings from the environment, Kafka access and
security, topic creation, garbage-collector tuning. Nothing here imports the command line."""
