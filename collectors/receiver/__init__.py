"""The gRPC receiver: authenticates senders, validates records and lands batches in raw.*."""
