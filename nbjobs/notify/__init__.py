"""Notifications: which events send what (`rules`), where to (`config`: the workspace's destinations),
the messages (`messages`), sending with timeouts and retries (`send`), and the bus subscriber that
records each delivery in the store (`notifier`). See docs/notifications.md."""
