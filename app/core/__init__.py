"""What the web app and the workers share, and nothing that serves requests: settings, the
database, the tables, the training spec, storage, the queue producer, errors, and the rules both
sides apply to jobs (events, leases, claims, the webhook outbox). Imports nothing else of app/."""
