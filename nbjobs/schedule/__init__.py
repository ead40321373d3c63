"""When jobs run: Quartz cron (`quartz`), schedule and trigger settings (`settings`), the scheduler service."""
